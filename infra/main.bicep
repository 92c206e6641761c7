// The whole app: resource group, identity, storage, Key Vault, monitoring, Flex Consumption
// function app, and the roles that tie them together. Deploy with `azd up`, or
// `az deployment sub create -l <region> -f infra/main.bicep -p environmentName=<name> location=<region>`.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name; with the subscription and region it makes every resource name unique.')
param environmentName string

// The regions of the official Flex Consumption quickstart (Azure-Samples/functions-quickstart-python-http-azd,
// infra/main.bicep): a Flex plan anywhere else fails at deploy time, so azd only offers these.
@minLength(1)
@description('Region for every resource; one that offers Flex Consumption.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'eastus2euap'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({ azd: { type: 'location' } })
param location string

@description('Object id of the deploying principal, for the roles setting secrets and local debugging need. Empty: none.')
param principalId string = ''

@description('What principalId is: User (a person, the default) or ServicePrincipal (azd or az in a CI pipeline). azd sets it from its login.')
@allowed(['User', 'ServicePrincipal', 'Group'])
param principalType string = 'User'

@description('Storage redundancy. Standard_LRS exists in every region above; where the region has availability zones choose Standard_ZRS (or Standard_GZRS where it also has a paired region).')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param storageSku string = 'Standard_LRS'

@description('E-mail address told when a job is dead-lettered. Empty: no action group; the alert still fires in the portal.')
param alertEmail string = ''

@description('Default sender and caller ID, E.164. Empty: every job must carry "from".')
param twilioFromNumber string = ''

@description('Default Messaging Service for SMS/WhatsApp jobs (MG + 32 hex); wins over twilioFromNumber. Empty: none.')
param twilioMessagingServiceSid string = ''

@secure()
@description('Optional: seed the Twilio Account SID secret. Empty: set it after deployment.')
param twilioAccountSid string = ''

@secure()
@description('Optional: seed the Twilio auth token secret. Empty: set it after deployment.')
param twilioAuthToken string = ''

@description('Outbound queue name (3-54 lowercase letters, digits, dashes).')
param outboundQueueName string = 'twilio-outbound'

@description('Table for the exactly-once jobs ledger.')
param jobsTableName string = 'twiliojobs'

@description('Queue the app publishes inbound SMS events on.')
param inboundQueueName string = 'twilio-inbound'

@description('Queue the app publishes message and call status events on.')
param statusQueueName string = 'twilio-status'

@description('Incoming call flow as one JSON document (see docs/webhooks.md); empty: greeting only.')
param callFlow string = ''

@description('SMS keyword replies as a JSON object, e.g. {"HOURS": "Open 9 to 5."}; empty: none.')
param smsKeywords string = ''

@description('What incoming callers hear.')
param voiceGreeting string = 'Hello. Thanks for calling. Goodbye.'

@description('Reply to incoming SMS; empty for none.')
param smsAutoReply string = 'Thanks for your message. We will get back to you soon.'

@description('Most instances the app scales out to (Flex Consumption).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance, MB (Flex Consumption).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var functionAppName = '${abbrs.webSitesFunctions}${resourceToken}'
// The vault is named after the app identity it serves. A re-provision keeps both; `azd down`
// deletes both, and purge protection holds a deleted vault's name for 90 days, so the next
// `azd up` (a new identity) gets a new vault name instead of a 409.
var keyVaultName = '${abbrs.keyVaultVaults}${uniqueString(resourceToken, identity.outputs.principalId)}'
var deploymentContainerName = 'app-package-${take(resourceToken, 7)}'
var accountSidSecretName = 'twilio-account-sid'
var authTokenSecretName = 'twilio-auth-token'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

// The app's own identity: every other resource trusts it by role, none by key.
module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}${resourceToken}'
    location: location
    tags: tags
  }
}

// Logs and telemetry, signed in by identity (local auth off).
module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
  }
}

// Host storage, the deployment package, the outbound queues and the jobs ledger.
module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    sku: storageSku
    deploymentContainerName: deploymentContainerName
    outboundQueueName: outboundQueueName
    jobsTableName: jobsTableName
    eventQueueNames: [inboundQueueName, statusQueueName]
  }
}

// Where the Twilio Account SID and auth token live.
module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
    accountSidSecretName: accountSidSecretName
    authTokenSecretName: authTokenSecretName
    twilioAccountSid: twilioAccountSid
    twilioAuthToken: twilioAuthToken
  }
}

// The function app on a Flex Consumption plan, configured with the settings the app reads.
// After rbac: the host starts, and azd deploys the code, only once the identity may read its
// storage and vault (role assignments still take minutes to propagate; see docs/deploy.md).
module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  dependsOn: [rbac]
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    keyVaultUri: keyVault.outputs.uri
    accountSidSecretName: accountSidSecretName
    authTokenSecretName: authTokenSecretName
    outboundQueueName: outboundQueueName
    jobsTableName: jobsTableName
    inboundQueueName: inboundQueueName
    statusQueueName: statusQueueName
    callFlow: callFlow
    smsKeywords: smsKeywords
    twilioFromNumber: twilioFromNumber
    twilioMessagingServiceSid: twilioMessagingServiceSid
    voiceGreeting: voiceGreeting
    smsAutoReply: smsAutoReply
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

// Data-plane roles for the app identity (and the deploying principal, if given).
module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    keyVaultName: keyVault.outputs.name
    appPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// A log alert when a job is dead-lettered, and an e-mail action group when alertEmail is set.
module alerts 'app/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    name: 'dead-letters-${resourceToken}'
    actionGroupName: '${abbrs.insightsActionGroups}${resourceToken}'
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output FUNCTION_APP_HOST string = api.outputs.defaultHostName
output TWILIO_VOICE_WEBHOOK_URL string = 'https://${api.outputs.defaultHostName}/api/voice'
output TWILIO_SMS_WEBHOOK_URL string = 'https://${api.outputs.defaultHostName}/api/sms'
output TWILIO_STATUS_CALLBACK_URL string = 'https://${api.outputs.defaultHostName}/api/status'
output KEY_VAULT_NAME string = keyVault.outputs.name
output KEY_VAULT_URL string = keyVault.outputs.uri
output OUTBOUND_QUEUE_NAME string = outboundQueueName
output INBOUND_QUEUE_NAME string = inboundQueueName
output STATUS_QUEUE_NAME string = statusQueueName
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
