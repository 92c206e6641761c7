// Key Vault for the Twilio Account SID and auth token: RBAC mode, soft delete, purge protection.
// No secret is written here: a deployment writes a new version on every provision, which would
// put an old token back over a rotation. infra/hooks seeds each secret only while it is absent.

@description('Key Vault name (3-24 characters).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

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

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
