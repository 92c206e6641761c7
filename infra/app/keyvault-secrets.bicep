// Writes the Twilio secrets into the vault; keyvault.bicep deploys it only when both are given.
// Each value is its own @secure() string: Bicep allows @secure() on string and object parameters
// only, and compiles this module even when its condition is false.

@description('Key Vault name.')
param vaultName string

@description('Secret name for the Twilio Account SID.')
param accountSidSecretName string

@description('Secret name for the Twilio auth token.')
param authTokenSecretName string

@secure()
@description('Twilio Account SID.')
param twilioAccountSid string

@secure()
@description('Twilio auth token.')
param twilioAuthToken string

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource accountSidSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:A Twilio Account SID does not expire; an expiry would stop the app without warning.
  parent: vault
  name: accountSidSecretName
  properties: {
    value: twilioAccountSid
    contentType: 'text/plain'
  }
}

resource authTokenSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41:A Twilio auth token has no fixed lifetime; an expiry would stop the app without warning. Rotate it as docs/deploy.md says.
  parent: vault
  name: authTokenSecretName
  properties: {
    value: twilioAuthToken
    contentType: 'text/plain'
  }
}
