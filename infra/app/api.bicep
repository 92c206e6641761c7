// The Flex Consumption (FC1) plan and the function app, with every setting the app reads.

@description('Function app name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Azure region.')
param location string

@description('Tags for every resource; the app also gets azd-service-name.')
param tags object

@description('Resource id of the app\'s user-assigned identity.')
param identityId string

@description('Client id of the app\'s user-assigned identity.')
param identityClientId string

@description('Storage account name (host storage, deployment package, queues, table).')
param storageAccountName string

@description('Blob container for the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Key Vault URI holding the Twilio secrets.')
param keyVaultUri string

@description('Secret name for the Twilio Account SID.')
param accountSidSecretName string

@description('Secret name for the Twilio auth token.')
param authTokenSecretName string

@description('Outbound queue name.')
param outboundQueueName string

@description('Jobs ledger table name.')
param jobsTableName string

@description('Queue for inbound SMS events.')
param inboundQueueName string

@description('Queue for message and call status events.')
param statusQueueName string

@description('Incoming call flow as one JSON document (docs/webhooks.md: call flow); empty: greeting only.')
param callFlow string

@description('SMS keyword replies as a JSON object; empty: none.')
param smsKeywords string

@description('Default sender and caller ID, E.164 (may be empty; then every job must carry "from").')
param twilioFromNumber string

@description('Default Messaging Service SID for SMS/WhatsApp jobs (may be empty); wins over twilioFromNumber.')
param twilioMessagingServiceSid string

@description('What incoming callers hear.')
param voiceGreeting string

@description('Reply to incoming SMS; empty for none.')
param smsAutoReply string

@description('Most instances each Flex scale group scales out to.')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory per instance, MB.')
@allowed([2048, 4096])
param instanceMemoryMB int

@description('Queue messages one instance fetches at once (extensions.queues.batchSize).')
@minValue(1)
@maxValue(32)
param queueBatchSize int

@description('Fetch the next batch when this few messages are still running (extensions.queues.newBatchThreshold).')
@minValue(0)
@maxValue(32)
param queueNewBatchThreshold int

@description('Per-instance ceiling on concurrent Twilio REST requests (TWILIO_MAX_CONCURRENCY).')
@minValue(1)
@maxValue(100)
param twilioMaxConcurrency int

@description('Webhook requests one instance of the HTTP group serves at once.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

@description('Always-ready instances of the HTTP group; 0: none.')
@minValue(0)
@maxValue(1000)
param alwaysReadyInstances int

@description('Seconds before a throttled job is dead-lettered as throttled (THROTTLE_DEADLINE_SECONDS).')
@minValue(60)
@maxValue(604800)
param throttleDeadlineSeconds int

@description('Days a final job row is kept (JOB_RETENTION_DAYS).')
@minValue(1)
@maxValue(3650)
param jobRetentionDays int

@description('Hours a webhook de-duplication row is kept (WEBHOOK_EFFECT_RETENTION_HOURS).')
@minValue(1)
@maxValue(8760)
param webhookEffectRetentionHours int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  //checkov:skip=CKV_AZURE_225:Flex Consumption zone redundancy exists only in some regions; set properties.zoneRedundant where yours offers it.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  //checkov:skip=CKV_AZURE_222:Twilio calls the webhooks from the internet; each request is signature-checked.
  //checkov:skip=CKV_AZURE_212:A serverless app scales from zero; instances are added per event, not kept for failover.
  //checkov:skip=CKV_AZURE_213:Flex Consumption instances are event-driven, not health-check evicted; /api/health serves external probes.
  //checkov:skip=CKV_AZURE_17:Twilio presents no client certificate; requests are authenticated by signature.
  //checkov:skip=CKV_AZURE_78:Flex Consumption has no FTP/FTPS endpoint and rejects siteConfig.ftpsState (ARM 51021); code deploys from the blob container.
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: { '${identityId}': {} }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    // Flex Consumption: runtime, memory and scale go in functionAppConfig; siteConfig keeps only
    // what the plan accepts ("Flex Consumption plan deprecations" lists what it refuses).
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      // Flex scales the HTTP triggers as one group and every other function on its own
      // (flex-consumption-plan, "Per-function scaling"): the outbound queue function and the
      // hourly retention timer (a singleton by its blob lease) need no settings of their own.
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: (alwaysReadyInstances > 0) ? [{ name: 'http', instanceCount: alwaysReadyInstances }] : []
        triggers: {
          http: { perInstanceConcurrency: httpPerInstanceConcurrency }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// checkov applies its whole-site checks to every sites/config resource; this one holds only
// app settings, and the site above carries the real configuration.
resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  //checkov:skip=CKV_AZURE_13:App settings only; see the site resource (Twilio signature instead of App Service auth).
  //checkov:skip=CKV_AZURE_63:App settings only; logs go to Application Insights.
  //checkov:skip=CKV_AZURE_65:App settings only; logs go to Application Insights.
  //checkov:skip=CKV_AZURE_66:App settings only; logs go to Application Insights.
  //checkov:skip=CKV_AZURE_80:App settings only; a Python app has no .NET Framework version.
  //checkov:skip=CKV_AZURE_88:App settings only; Flex Consumption deploys from blob storage, not Azure Files.
  //checkov:skip=CKV_AZURE_222:App settings only; see the site resource.
  parent: site
  name: 'appsettings'
  properties: {
    // Host storage by identity: no connection string, no key.
    AzureWebJobsStorage__blobServiceUri: storage.properties.primaryEndpoints.blob
    AzureWebJobsStorage__queueServiceUri: storage.properties.primaryEndpoints.queue
    AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    AZURE_CLIENT_ID: identityClientId
    KEY_VAULT_URL: keyVaultUri
    TWILIO_ACCOUNT_SID_SECRET_NAME: accountSidSecretName
    TWILIO_AUTH_TOKEN_SECRET_NAME: authTokenSecretName
    TWILIO_FROM_NUMBER: twilioFromNumber
    TWILIO_MESSAGING_SERVICE_SID: twilioMessagingServiceSid
    WEBHOOK_BASE_URL: 'https://${site.properties.defaultHostName}'
    OUTBOUND_QUEUE_NAME: outboundQueueName
    JOBS_TABLE_NAME: jobsTableName
    INBOUND_QUEUE_NAME: inboundQueueName
    STATUS_QUEUE_NAME: statusQueueName
    CALL_FLOW: callFlow
    SMS_KEYWORDS: smsKeywords
    VOICE_GREETING: voiceGreeting
    SMS_AUTO_REPLY: smsAutoReply
    TWILIO_MAX_CONCURRENCY: string(twilioMaxConcurrency)
    THROTTLE_DEADLINE_SECONDS: string(throttleDeadlineSeconds)
    JOB_RETENTION_DAYS: string(jobRetentionDays)
    WEBHOOK_EFFECT_RETENTION_HOURS: string(webhookEffectRetentionHours)
    // host.json's queue settings, overridden here so `azd env set` sizes them (FACTS: the
    // host reads AzureFunctionsJobHost__<path> over host.json).
    AzureFunctionsJobHost__extensions__queues__batchSize: string(queueBatchSize)
    AzureFunctionsJobHost__extensions__queues__newBatchThreshold: string(queueNewBatchThreshold)
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
