// Writes the Twilio secrets into the vault when the deployment is given their values.

@description('Key Vault name.')
param vaultName string

@secure()
@description('Secrets to write: an array of { name, value }.')
param secrets array

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource secret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = [for s in secrets: {
  parent: vault
  name: s.name
  //checkov:skip=CKV_AZURE_41:A Twilio auth token has no fixed lifetime; an expiry would stop the app without warning. Rotate it as the README says.
  properties: {
    value: s.value
    contentType: 'text/plain'
  }
}]
