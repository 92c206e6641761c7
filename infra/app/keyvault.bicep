// Key Vault for the Twilio Account SID and auth token: RBAC mode, soft delete, purge protection.

@description('Key Vault name (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Secret name for the Twilio Account SID.')
param accountSidSecretName string

@description('Secret name for the Twilio auth token.')
param authTokenSecretName string

@secure()
@description('Optional: seed the Account SID secret. Empty: set it after deployment.')
param twilioAccountSid string = ''

@secure()
@description('Optional: seed the auth token secret. Empty: set it after deployment.')
param twilioAuthToken string = ''

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109:Flex Consumption without VNet integration reads the vault over its public endpoint; access is Entra ID + RBAC only.
  //checkov:skip=CKV_AZURE_189:Same as CKV_AZURE_109: no private endpoint in this deployment; no access policies, RBAC only.
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: { family: 'A', name: 'standard' }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// Seeded only when both values are given; otherwise set after deployment (see docs/deploy.md).
module seed 'keyvault-secrets.bicep' = if (!empty(twilioAccountSid) && !empty(twilioAuthToken)) {
  name: 'keyvault-secrets'
  params: {
    vaultName: vault.name
    accountSidSecretName: accountSidSecretName
    authTokenSecretName: authTokenSecretName
    twilioAccountSid: twilioAccountSid
    twilioAuthToken: twilioAuthToken
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
