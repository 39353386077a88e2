// The Durable Task Scheduler backend (optional): a scheduler and the task hub DataSync's
// orchestrations run in. Deployed by main.bicep (module `dts`) when
// durableBackend = 'durableTaskScheduler'; the app's identity gets its data role from
// dts-access.bicep (a second module: the role needs the app, the app needs this endpoint).
//
// The app switches backend through app settings that override host.json
// (AzureFunctionsJobHost__extensions__durableTask__storageProvider__*), so host.json stays
// the Azure Storage default for everyone else (and for the embedded local runtime).

@description('Azure region (the same as the Function App: fewer cross-region round trips).')
param location string

@description('Scheduler name (3-64 letters, digits and dashes).')
param name string

@description('Task hub name: the same as host.json extensions.durableTask.hubName.')
param taskHubName string

@description('Consumption: pay per action, up to 500 actions/s. Dedicated: capacity units of up to 2,000 actions/s each.')
@allowed(['Consumption', 'Dedicated'])
param skuName string = 'Consumption'

@description('Capacity units (Dedicated only; 1 to 3, 3 for high availability).')
@minValue(1)
@maxValue(3)
param capacity int = 1

@description('Client addresses allowed to reach the scheduler; an empty list denies every caller.')
param ipAllowlist array = ['0.0.0.0/0']

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  properties: {
    ipAllowlist: ipAllowlist
    sku: skuName == 'Dedicated' ? { name: skuName, capacity: capacity } : { name: skuName }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

output schedulerName string = scheduler.name
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
