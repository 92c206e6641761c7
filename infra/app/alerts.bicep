// Tells a person when a job is dead-lettered, so nobody has to watch the -rejected and -poison
// queues: one log alert on what the app and the Functions host log, and an e-mail action group
// when an address is given (without one the alert still fires in the portal's Alerts view).

@description('Alert rule name.')
param name string

@description('Action group name; created only when alertEmail is set.')
param actionGroupName string

@description('Azure region (that of Application Insights).')
param location string

@description('Tags for every resource.')
param tags object

@description('Resource id of the Application Insights component the app logs to.')
param applicationInsightsId string

@description('E-mail address told about dead letters; empty: no action group.')
param alertEmail string = ''

// Message text is what reaches Application Insights `traces` from the Python worker (not a
// record's `extra`), so both sources are matched on their stable text:
// - the app, once per dead letter (shared/deadletters.py, log_dead_letter), a WARNING
//   `dead_letter kind=<kind> job_key=<key> twilio_code=<code> queue=<queue> reason=<text>`;
// - the Functions host when a message failed maxDequeueCount times (azure-webjobs-sdk
//   QueueProcessor.CopyMessageToPoisonQueueAsync), a WARNING
//   `Message has reached MaxDequeueCount of <n>. Moving message to queue '<queue>-poison'.`
// docs/deploy.md shows the same query over the last day; a test keeps both in step with the app.
var deadLetterQuery = '''
let appLines = traces
    | where message startswith "dead_letter "
    | parse message with "dead_letter kind=" kind " job_key=" job_key " twilio_code=" twilio_code " queue=" queue " reason=" reason;
let hostPoisonMoves = traces
    | where message startswith "Message has reached MaxDequeueCount"
    | parse message with * "Moving message to queue '" queue "'" *
    | extend kind = "host_poison", job_key = "-", twilio_code = "-", reason = message;
union appLines, hostPoisonMoves
| project timestamp, kind, queue, job_key, twilio_code, reason
'''

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: actionGroupName
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'deadletters'
    enabled: true
    emailReceivers: [
      {
        name: 'dead-letters'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

// Every dead letter needs a person, so one is enough (count > 0). Evaluated every 5 minutes over
// the last 15: records that reach Application Insights up to 10 minutes late are still seen.
// Stateful (autoMitigate): one notification per kind and queue while dead letters keep coming,
// resolved after 15 quiet minutes, so a burst of rejections sends one e-mail, not one per job.
resource deadLetterAlert 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'Twilio jobs dead-lettered'
    description: 'A job went to <queue>-rejected or <queue>-poison. Kinds: invalid_job, no_sender, twilio_permanent, retries_exhausted, outcome_unknown, throttled (from the app); host_poison (the function crashed maxDequeueCount times). docs/deploy.md: Alerts on dead letters.'
    severity: 2
    enabled: true
    scopes: [applicationInsightsId]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT15M'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: deadLetterQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'kind'
              operator: 'Include'
              values: ['*']
            }
            {
              name: 'queue'
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
      actionGroups: empty(alertEmail) ? [] : [actionGroup.id]
    }
  }
}

output alertRuleId string = deadLetterAlert.id
