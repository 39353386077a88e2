// DataSync on Azure: everything the Functions app needs, wired by managed identity.
//
//   az group create -n rg-datasync -l westeurope
//   az deployment group create -g rg-datasync -f infra/main.bicep \
//       -p operatorPrincipalId=$(az ad signed-in-user show --query id -o tsv)
//   func azure functionapp publish <functionAppName output>
//
// Resources: a Flex Consumption plan (Linux) and a Python 3.11 Function App with a
// system-assigned identity; a Storage account (queues, Durable task hub, staged pages,
// deployment packages) reached by identity only; Cosmos DB (serverless, local auth off)
// with database `flowsync` and containers `tenants`, `runs`, `checkpoints` (partition key
// /tenantId); Key Vault (RBAC); Application Insights on a Log Analytics workspace.
// See infra/README.md.

targetScope = 'resourceGroup'

@description('Azure region for every resource (Flex Consumption is not in every region).')
param location string = resourceGroup().location

@description('Base name; resource names get a suffix unique to the resource group.')
@minLength(3)
@maxLength(16)
param baseName string = 'datasync'

@description('DATASYNC_SCAN_SCHEDULE: the scheduler timer (NCRONTAB, six fields).')
param scanSchedule string = '0 0 * * * *'

@description('Object id of a user or group that operates DataSync (az ad signed-in-user show --query id -o tsv): may set Key Vault secrets, read/write Cosmos items (tenants apply, runs) and use the job queues (queue put, poison replay). Empty: none.')
param operatorPrincipalId string = ''

@description('Principal type of operatorPrincipalId.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param operatorPrincipalType string = 'User'

@description('Maximum on-demand instances per Flex Consumption scale group (40 to 1000; the platform default is 100). Lower it after deployment with az functionapp scale config set --maximum-instance-count.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory per instance (MB) on Flex Consumption.')
@allowed([2048, 4096])
param instanceMemoryMB int = 2048

@description('Alerts (infra/alerts.bicep): resource id of an existing action group to notify. Empty: one is created for alertEmail, else the alerts notify nobody (they still show in the portal).')
param actionGroupId string = ''

@description('Alerts: e-mail address of a new action group (only when actionGroupId is empty).')
param alertEmail string = ''

@description('Alerts: minutes without a successful scheduler tick before the heartbeat alert fires (about 2 x the scan interval + 10).')
param heartbeatMissingMinutes int = 130

@description('Alerts: lateness p95 threshold in seconds.')
param latenessP95Seconds int = 60

@description('Alerts: failed runs in a row of one tenant flow before it alerts.')
param failuresInARow int = 3

@description('Alerts: seconds the oldest due flow-jobs message may wait.')
param queueOldestAgeSeconds int = 900

@description('Durable Functions backend. azureStorage: the task hub lives in the Storage account (host.json as shipped). durableTaskScheduler: a Durable Task Scheduler and task hub (infra/dts.bicep); app settings switch host.json storageProvider to azureManaged. See infra/README.md.')
@allowed(['azureStorage', 'durableTaskScheduler'])
param durableBackend string = 'azureStorage'

@description('Durable Task Scheduler SKU (durableBackend = durableTaskScheduler): Consumption (pay per action, up to 500 actions/s) or Dedicated (capacity units, up to 2,000 actions/s each).')
@allowed(['Consumption', 'Dedicated'])
param durableTaskSchedulerSku string = 'Consumption'

@description('Durable Task Scheduler capacity units (Dedicated only; 3 for high availability).')
@minValue(1)
@maxValue(3)
param durableTaskSchedulerCapacity int = 1

var suffix = uniqueString(resourceGroup().id)
var appName = '${baseName}-${suffix}'
var storageName = take('st${toLower(replace(baseName, '-', ''))}${suffix}', 24)
var keyVaultName = take('kv-${baseName}-${suffix}', 24)
var cosmosName = toLower('cosmos-${baseName}-${suffix}')
var databaseName = 'flowsync'
var deploymentContainer = 'app-package'
var pagesContainer = 'datasync-pages'
var useDurableTaskScheduler = durableBackend == 'durableTaskScheduler'
var schedulerName = take('dts-${baseName}-${suffix}', 64)
var taskHubName = 'DataSyncHub' // host.json extensions.durableTask.hubName
// App settings that override host.json (AzureFunctionsJobHost__<path>) to move the task hub
// to the scheduler; the system-assigned identity authenticates (dts-access.bicep).
var durableTaskSchedulerSettings = useDurableTaskScheduler
  ? [
      { name: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING', value: 'Endpoint=${dts.outputs.endpoint};Authentication=ManagedIdentity' }
      { name: 'AzureFunctionsJobHost__extensions__durableTask__storageProvider__type', value: 'azureManaged' }
      { name: 'AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName', value: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING' }
    ]
  : []

// Built-in role definitions (ids are the same in every tenant).
var roles = {
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}
// Cosmos DB Built-in Data Contributor (a data-plane SQL role, not an Azure RBAC role).
var cosmosDataContributor = '00000000-0000-0000-0000-000000000002'

// -- monitoring ------------------------------------------------------------------------

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${appName}'
  location: location
  properties: {
    sku: { name: 'PerGB2018' }
    retentionInDays: 30
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${appName}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
  }
}

// -- storage: queues (flow-jobs), Durable task hub, staged pages, deployment packages ---

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageName
  location: location
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false // identity only: AzureWebJobsStorage__accountName
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

resource packages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainer
}

resource pages 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: pagesContainer
}

// Staged pages are deleted after each push; those of a run that failed for good are not.
resource pagesLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-staged-pages'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${pagesContainer}/']
            }
            actions: {
              baseBlob: {
                delete: { daysAfterModificationGreaterThan: 7 }
              }
            }
          }
        }
      ]
    }
  }
}

// -- Cosmos DB: tenants, run history, checkpoints --------------------------------------

resource cosmos 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: cosmosName
  location: location
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: { defaultConsistencyLevel: 'Session' }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    capabilities: [{ name: 'EnableServerless' }]
    disableLocalAuth: true // keys off: Entra ID (managed identity, az login) only
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: cosmos
  name: databaseName
  properties: {
    resource: { id: databaseName }
  }
}

resource containers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [
  for name in ['tenants', 'runs', 'checkpoints']: {
    parent: database
    name: name
    properties: {
      resource: {
        id: name
        partitionKey: {
          paths: ['/tenantId']
          kind: 'Hash'
        }
      }
    }
  }
]

// -- Key Vault (RBAC): tenants--{tenant}--{system}--{key} -------------------------------

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    publicNetworkAccess: 'Enabled'
  }
}

// -- the Durable Task Scheduler (durableBackend = durableTaskScheduler) ------------------

module dts 'dts.bicep' = if (useDurableTaskScheduler) {
  name: 'dts'
  params: {
    location: location
    name: schedulerName
    taskHubName: taskHubName
    skuName: durableTaskSchedulerSku
    capacity: durableTaskSchedulerCapacity
  }
}

// -- the Function App ------------------------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${appName}'
  location: location
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  kind: 'functionapp,linux'
  identity: { type: 'SystemAssigned' }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainer}'
          authentication: { type: 'SystemAssignedIdentity' }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      // Flex Consumption sets the worker runtime and version from functionAppConfig:
      // FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION must not be set here.
      appSettings: concat([
        { name: 'AzureWebJobsStorage__accountName', value: storage.name }
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: insights.properties.ConnectionString }
        // Required: the scheduler's timer binding is %DATASYNC_SCAN_SCHEDULE%; without it
        // the host cannot resolve the binding and the scheduler function fails to load.
        { name: 'DATASYNC_SCAN_SCHEDULE', value: scanSchedule }
        { name: 'COSMOS_ENDPOINT', value: cosmos.properties.documentEndpoint }
        { name: 'COSMOS_DATABASE', value: databaseName }
        { name: 'COSMOS_CONTAINER', value: 'tenants' }
        { name: 'KEYVAULT_URL', value: vault.properties.vaultUri }
        // Nothing embedded runs on Azure: DATASYNC_HOME, DATASYNC_LOG_LEVEL and the other
        // settings only the embedded runtime reads are deliberately absent (host.json
        // sets the log levels here). Worker indexing is the host's default, so there is
        // no AzureWebJobsFeatureFlags either.
      ], durableTaskSchedulerSettings)
    }
  }
  dependsOn: [
    packages
    pages
    containers
  ]
}

// -- role assignments for the app's identity -------------------------------------------

resource storageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roles.storageBlobDataOwner, roles.storageQueueDataContributor, roles.storageTableDataContributor]: {
    name: guid(storage.id, functionApp.id, role)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: functionApp.identity.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource vaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionApp.id, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: functionApp.identity.principalId
    principalType: 'ServicePrincipal'
  }
}

resource cosmosAppRole 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: cosmos
  name: guid(cosmos.id, functionApp.id, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: functionApp.identity.principalId
    scope: cosmos.id
  }
}

module dtsAccess 'dts-access.bicep' = if (useDurableTaskScheduler) {
  name: 'dtsAccess'
  params: {
    schedulerName: schedulerName
    principalId: functionApp.identity.principalId
  }
  dependsOn: [
    dts
  ]
}

// -- optional: the operator (CLI: secrets, tenants apply, runs) -----------------------

resource vaultOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(vault.id, operatorPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

resource cosmosOperatorRole 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = if (!empty(operatorPrincipalId)) {
  parent: cosmos
  name: guid(cosmos.id, operatorPrincipalId, cosmosDataContributor)
  properties: {
    roleDefinitionId: '${cosmos.id}/sqlRoleDefinitions/${cosmosDataContributor}'
    principalId: operatorPrincipalId
    scope: cosmos.id
  }
}

resource queueOperator 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(storage.id, operatorPrincipalId, roles.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.storageQueueDataContributor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
  }
}

// -- alert rules (infra/alerts.bicep) ----------------------------------------------------

module alerts 'alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    appName: appName
    appInsightsId: insights.id
    actionGroupId: actionGroupId
    alertEmail: alertEmail
    heartbeatMissingMinutes: heartbeatMissingMinutes
    latenessP95Seconds: latenessP95Seconds
    failuresInARow: failuresInARow
    queueOldestAgeSeconds: queueOldestAgeSeconds
  }
}

output functionAppName string = functionApp.name
output functionAppHost string = functionApp.properties.defaultHostName
output storageAccountName string = storage.name
output cosmosEndpoint string = cosmos.properties.documentEndpoint
output keyVaultName string = vault.name
output keyVaultUri string = vault.properties.vaultUri
output applicationInsightsName string = insights.name
output alertRuleNames array = alerts.outputs.alertRuleNames
output durableTaskSchedulerEndpoint string = useDurableTaskScheduler ? dts.outputs.endpoint : ''

