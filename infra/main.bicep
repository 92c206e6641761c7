// The whole app: resource group, identity, storage, Key Vault, monitoring, Flex Consumption
// function app, and the roles that tie them together. Deploy with `azd up`, or
// `az deployment sub create -l <region> -f infra/main.bicep -p environmentName=<name> location=<region>`.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name; with the subscription and region it makes every resource name unique.')
param environmentName string

// The regions of the official Flex Consumption quickstart (Azure-Samples/functions-quickstart-python-http-azd,
// infra/main.bicep) without its canary region eastus2euap (EUAP: early-access Azure regions that
// ordinary subscriptions cannot deploy to). A Flex plan anywhere else fails at deploy time, so azd
// only offers these; `az functionapp list-flexconsumption-locations` is the live list.
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

@description('Object ids of other identities that put jobs on the outbound queue, comma-separated (another app\'s managed identity, a Logic App\'s). Each gets Storage Queue Data Message Sender on that queue only. Empty: none.')
param producerPrincipalIds string = ''

// Sizing (docs/deploy.md, "Sizing"). Flex scales each function group on its own, the outbound
// queue function up to maximumInstanceCount instances, each sending at most twilioMaxConcurrency
// Twilio requests at once: the defaults (10 x 8 = 80) stay under the 100 concurrent requests a
// Twilio account commonly allows. Each is mapped in main.parameters.json, so `azd env set` keeps it.

@description('Most instances each Flex scale group (the outbound queue function; the webhooks) scales out to. Flex accepts 1 to 1000.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 10

@description('Memory per instance, MB: 2048 or 4096, the sizes Flex Consumption documents (512 is refused with the API version used here).')
@allowed([2048, 4096])
param instanceMemoryMB int = 2048

@description('Queue messages one instance fetches at once (host.json extensions.queues.batchSize; the host accepts 1 to 32).')
@minValue(1)
@maxValue(32)
param queueBatchSize int = 16

@description('Fetch the next batch when this few messages are still running (extensions.queues.newBatchThreshold): an instance runs up to batchSize + newBatchThreshold jobs at once.')
@minValue(0)
@maxValue(32)
param queueNewBatchThreshold int = 8

@description('Per-instance ceiling on concurrent Twilio REST requests (TWILIO_MAX_CONCURRENCY). Keep maximumInstanceCount x this under the account\'s limit.')
@minValue(1)
@maxValue(100)
param twilioMaxConcurrency int = 8

@description('Webhook requests one instance of the HTTP group serves at once (functionAppConfig.scaleAndConcurrency.triggers.http.perInstanceConcurrency).')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Instances of the HTTP group kept warm (always ready; billed while idle). 0: none, webhooks may meet a cold start.')
@minValue(0)
@maxValue(1000)
param alwaysReadyInstances int = 0

@description('A job throttled by Twilio (HTTP 429) is dead-lettered as throttled only after this long (THROTTLE_DEADLINE_SECONDS).')
@minValue(60)
@maxValue(604800)
param throttleDeadlineSeconds int = 3600

@description('Days a job\'s row in the ledger is kept after it reached a final state (JOB_RETENTION_DAYS).')
@minValue(1)
@maxValue(3650)
param jobRetentionDays int = 30

@description('Hours a webhook\'s de-duplication row is kept (WEBHOOK_EFFECT_RETENTION_HOURS); Twilio retries within minutes.')
@minValue(1)
@maxValue(8760)
param webhookEffectRetentionHours int = 48

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

// Where the Twilio Account SID and auth token live (infra/hooks writes them only when absent).
module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: keyVaultName
    location: location
    tags: tags
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
    queueBatchSize: queueBatchSize
    queueNewBatchThreshold: queueNewBatchThreshold
    twilioMaxConcurrency: twilioMaxConcurrency
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    alwaysReadyInstances: alwaysReadyInstances
    throttleDeadlineSeconds: throttleDeadlineSeconds
    jobRetentionDays: jobRetentionDays
    webhookEffectRetentionHours: webhookEffectRetentionHours
  }
}

// Data-plane roles for the app identity, the deploying principal and the producers, if given.
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
    outboundQueueName: outboundQueueName
    producerPrincipalIds: producerPrincipalIds
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
