// DataSync's alert rules: Azure Monitor scheduled query rules over Application Insights.
//
// Every rule reads what DataSync's own telemetry (datasync/telemetry, on by itself when
// APPLICATIONINSIGHTS_CONNECTION_STRING is set) sends: spans of kind SERVER/CONSUMER land in
// `requests`, the others in `dependencies`, span attributes in customDimensions; metrics
// (counters, histograms, gauges) in `customMetrics`. Each rule describes a state, not an
// event, and resolves by itself when the state ends (autoMitigate). See infra/README.md
// ("Alerts") for what to do when one fires.
//
// Deployed by main.bicep (module `alerts`); on its own:
//   az deployment group create -g rg-datasync -f infra/alerts.bicep \
//       -p appInsightsId=<id> appName=<name> actionGroupId=<id>

@description('Azure region of the alert rules.')
param location string = resourceGroup().location

@description('Name prefix of the rules (the Function App name).')
param appName string

@description('Resource id of the Application Insights component DataSync sends to.')
param appInsightsId string

@description('Resource id of an existing action group to notify. Empty: use the one created from alertEmail, else notify nobody (the alerts still show in the portal).')
param actionGroupId string = ''

@description('E-mail address for a new action group (used only when actionGroupId is empty). Empty: none.')
param alertEmail string = ''

@description('Minutes without a successful scheduler tick before the heartbeat alert fires (default: two hourly scans plus a margin). Set it to about 2 x DATASYNC_SCAN_SCHEDULE + 10.')
@minValue(5)
@maxValue(2880)
param heartbeatMissingMinutes int = 130

@description('Schedule lateness p95 (start - scheduledFor, over 30 minutes) in seconds above which the lateness alert fires.')
@minValue(1)
param latenessP95Seconds int = 60

@description('Failed runs in a row of one tenant + flow (no Completed run since) that fire the failing-flow alert.')
@minValue(1)
@maxValue(100)
param failuresInARow int = 3

@description('Seconds the oldest visible flow-jobs message may wait before the queue-age alert fires.')
@minValue(60)
param queueOldestAgeSeconds int = 900

var createGroup = empty(actionGroupId) && !empty(alertEmail)
var groups = !empty(actionGroupId) ? [actionGroupId] : (createGroup ? [group.id] : [])

resource group 'Microsoft.Insights/actionGroups@2023-01-01' = if (createGroup) {
  name: 'ag-${appName}'
  location: 'global'
  properties: {
    groupShortName: take('datasync', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operator'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// name, severity, description, evaluation frequency, window, query, measure column,
// operator, threshold, dimensions (split per tenant/flow), query time range override
var rules = [
  {
    name: 'scheduler-heartbeat-missing'
    severity: 1
    description: 'No successful scheduler tick for ${heartbeatMissingMinutes} minutes: nothing new is being enqueued.'
    frequency: 'PT15M'
    window: 'PT1H'
    query: '''
requests
| where name in ("datasync.scheduler.tick", "schedule_flows") and success == true
| summarize ticks = count()
'''
    measure: 'ticks'
    operator: 'LessThan'
    threshold: 1
    dimensions: []
    range: 'PT${heartbeatMissingMinutes}M'
  }
  {
    name: 'lateness-p95'
    severity: 2
    description: 'Runs start late: p95 of (start - scheduledFor) over 30 minutes is above ${latenessP95Seconds} s.'
    frequency: 'PT10M'
    window: 'PT30M'
    query: '''
dependencies
| where name == "datasync.begin"
| extend lateness_s = todouble(customDimensions["datasync.lateness_ms"]) / 1000.0
| where isnotnull(lateness_s)
| summarize p95 = percentile(lateness_s, 95)
'''
    measure: 'p95'
    operator: 'GreaterThan'
    threshold: latenessP95Seconds
    dimensions: []
    range: ''
  }
  {
    name: 'flow-failing'
    severity: 1
    description: 'A tenant flow failed ${failuresInARow} times in a row (no Completed run since); resolves with its next Completed run.'
    frequency: 'PT15M'
    window: 'P1D'
    query: '''
let runs = dependencies
| where name == "datasync.run"
| extend tenant = tostring(customDimensions["datasync.tenant_id"]),
         flow = tostring(customDimensions["datasync.flow_name"]),
         status = tostring(customDimensions["datasync.status"]);
runs
| summarize lastOk = maxif(timestamp, status == "Completed") by tenant, flow
| join kind=inner (runs) on tenant, flow
| where status == "Failed" and (isnull(lastOk) or timestamp > lastOk)
| summarize failedInARow = count() by tenant, flow
'''
    measure: 'failedInARow'
    operator: 'GreaterThanOrEqual'
    threshold: failuresInARow
    dimensions: ['tenant', 'flow']
    range: 'P2D'
  }
  {
    name: 'stuck-pending'
    severity: 2
    description: 'A run has been Pending longer than DATASYNC_STUCK_PENDING_SECONDS (default 5 min): its orchestration did not start.'
    frequency: 'PT5M'
    window: 'PT10M'
    query: '''
customMetrics
| where name == "datasync.runs.stuck" and tostring(customDimensions["status"]) == "Pending"
| summarize stuck = max(value)
'''
    measure: 'stuck'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
    range: ''
  }
  {
    name: 'stuck-running'
    severity: 2
    description: 'A run is Running without page progress for longer than DATASYNC_STUCK_RUNNING_SECONDS (default 30 min).'
    frequency: 'PT5M'
    window: 'PT10M'
    query: '''
customMetrics
| where name == "datasync.runs.stuck" and tostring(customDimensions["status"]) == "Running"
| summarize stuck = max(value)
'''
    measure: 'stuck'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
    range: ''
  }
  {
    name: 'queue-oldest-age'
    severity: 2
    description: 'A due job has waited on flow-jobs longer than ${queueOldestAgeSeconds} s: starters are not keeping up or not running.'
    frequency: 'PT5M'
    window: 'PT10M'
    query: '''
customMetrics
| where name == "datasync.queue.oldest_age" and tostring(customDimensions["queue"]) == "flow-jobs"
| summarize age = max(value)
'''
    measure: 'age'
    operator: 'GreaterThan'
    threshold: queueOldestAgeSeconds
    dimensions: []
    range: ''
  }
  {
    name: 'poison-not-empty'
    severity: 2
    description: 'flow-jobs-poison holds messages: jobs that failed maxDequeueCount times (python -m datasync poison list).'
    frequency: 'PT15M'
    window: 'PT30M'
    query: '''
customMetrics
| where name == "datasync.queue.depth" and tostring(customDimensions["queue"]) == "flow-jobs-poison"
| summarize depth = max(value)
'''
    measure: 'depth'
    operator: 'GreaterThan'
    threshold: 0
    dimensions: []
    range: ''
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
    name: '${appName}-${rule.name}'
    location: location
    kind: 'LogAlert'
    properties: {
      displayName: 'DataSync: ${rule.name}'
      description: rule.description
      severity: rule.severity
      enabled: true
      scopes: [appInsightsId]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      overrideQueryTimeRange: empty(rule.range) ? null : rule.range
      autoMitigate: true
      criteria: {
        allOf: [
          {
            query: rule.query
            timeAggregation: 'Maximum'
            metricMeasureColumn: rule.measure
            operator: rule.operator
            threshold: rule.threshold
            dimensions: [
              for d in rule.dimensions: {
                name: d
                operator: 'Include'
                values: ['*']
              }
            ]
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: {
        actionGroups: groups
      }
    }
  }
]

output alertRuleNames array = [for (rule, i) in rules: alerts[i].name]
