// The Function App's identity on the Durable Task Scheduler: Durable Task Data Contributor
// on the scheduler (every task hub in it). Deployed by main.bicep (module `dtsAccess`).

@description('Name of the scheduler made by dts.bicep.')
param schedulerName string

@description('Object id of the Function App\'s system-assigned identity.')
param principalId string

// Built-in role "Durable Task Data Contributor" (the same id in every tenant).
var durableTaskDataContributor = '0ad04412-c4d5-4796-b79c-f76d14c8d402'

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' existing = {
  name: schedulerName
}

resource appRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scheduler.id, principalId, durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
  }
}
