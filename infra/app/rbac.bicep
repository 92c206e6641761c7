// Least-privilege data-plane roles: the app identity gets exactly what it uses; the
// deploying principal (optional) gets what setting the secrets, enqueueing test jobs and
// reading their outcome need; producers (optional) may only add messages to the outbound queue.

@description('Storage account name.')
param storageAccountName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Key Vault name.')
param keyVaultName string

@description('Principal id of the app\'s user-assigned identity.')
param appPrincipalId string

@description('Principal id of the deploying principal; empty: no roles for it.')
param userPrincipalId string = ''

@description('Type of userPrincipalId: User, or ServicePrincipal when azd runs in CI. A mismatch fails the deployment (UnmatchedPrincipalType).')
@allowed(['User', 'ServicePrincipal', 'Group'])
param userPrincipalType string = 'User'

@description('The outbound queue, the one queue producers may send to.')
param outboundQueueName string

@description('Object ids of the identities that put jobs on the outbound queue, comma-separated; empty: none.')
param producerPrincipalIds string = ''

var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  storageQueueDataMessageSender: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a' // Storage Queue Data Message Sender
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

resource outboundQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  parent: queueService
  name: outboundQueueName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// App identity: host storage and the deployment package (blob), the outbound queues, the jobs table.
resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
  name: guid(storage.id, appPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// App identity: telemetry to Application Insights with local auth off.
resource appMetricsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// App identity: read the Twilio secrets.
resource appSecretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// Deploying principal: set and rotate the secrets.
resource userSecretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

// Deploying principal, the operator: enqueue test jobs and read the dead-letter queues
// (queue); read a job's outcome, and write the row a replay needs so that the worker looks at
// Twilio before sending (table: ops deadletters replay). No principal: an empty loop.
var userStorageRoleIds = empty(userPrincipalId) ? [] : [roles.storageQueueDataContributor, roles.storageTableDataContributor]

resource userStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in userStorageRoleIds: {
  name: guid(storage.id, userPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}]

// Producers (another app's managed identity, a Logic App's): add messages to the outbound queue
// and nothing else: no other queue, no reading, no table. "id1, id2" and a trailing comma are
// fine (empty items are dropped). No principalType: a producer may be a managed identity, a user
// or a group, and ARM looks an existing principal up itself (principalType is only needed for
// one created in the same deployment, which a producer is not).
var producerIds = filter(split(replace(producerPrincipalIds, ' ', ''), ','), id => !empty(id))

resource producerRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for producerId in producerIds: {
  name: guid(outboundQueue.id, producerId, roles.storageQueueDataMessageSender)
  scope: outboundQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataMessageSender)
    principalId: producerId
  }
}]
