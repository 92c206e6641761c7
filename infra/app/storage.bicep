// Storage for the Functions host, the deployment package, the outbound queues and the jobs table.
// Shared key access is off: everything authenticates with Entra ID.

@description('Storage account name (3-24 lowercase letters and digits).')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object

@description('Redundancy SKU; main.bicep explains the choice.')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param sku string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('The outbound queue; "-rejected" and "-poison" queues are created beside it.')
param outboundQueueName string

@description('Table for the exactly-once jobs ledger.')
param jobsTableName string

@description('Queues the app publishes events on: inbound messages and status updates.')
param eventQueueNames array

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35:Flex Consumption without VNet integration reaches storage over its public endpoint; shared keys are off, Entra ID + RBAC only.
  //checkov:skip=CKV_AZURE_59:Same as CKV_AZURE_35.
  //checkov:skip=CKV_AZURE_206:Geo-redundant SKUs do not exist in every Flex Consumption region, so the default is Standard_LRS; the sku parameter takes ZRS, GRS or GZRS where the region has them (docs/deploy.md).
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: sku }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: { enabled: true, days: 7 }
    containerDeleteRetentionPolicy: { enabled: true, days: 7 }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

// The outbound queue, its two dead-letter queues (see docs/reliability.md: where every job ends), and
// the event queues.
var queueNames = concat([outboundQueueName, '${outboundQueueName}-rejected', '${outboundQueueName}-poison'], eventQueueNames)

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [for queueName in queueNames: {
  parent: queueService
  name: queueName
}]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource jobsTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: jobsTableName
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output tableEndpoint string = storage.properties.primaryEndpoints.table
