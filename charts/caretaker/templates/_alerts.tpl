{{/*
caretaker.alertGroups: Prometheus alert rules for caretaker's metrics.
Takes (dict "rule" <metrics.prometheusRule values> "selector" <label matchers or "">
"namespace" <namespace matcher or "">). examples/prometheus/caretaker-rules.yaml is this
template rendered unscoped (a test keeps the two identical). `{{`...`}}` strings below are
Prometheus templates, passed through verbatim.
*/}}
{{- define "caretaker.alertGroups" -}}
{{- $r := .rule }}
{{- $sel := .selector }}
{{- $and := ternary "" (printf ",%s" $sel) (empty $sel) }}
{{- $ns := ternary "" (printf ",%s" .namespace) (empty .namespace) }}
{{- $maxAge := int $r.backupMaxAgeSeconds }}
{{- $matchers := ternary "" (printf "{%s}" $sel) (empty $sel) }}
{{- $newest := printf "caretaker_last_backup_timestamp_seconds%s" $matchers }}
{{- $success := printf "caretaker_job_last_success_timestamp_seconds%s" $matchers }}
- name: caretaker
  rules:
    - alert: CaretakerBackupTooOld
      expr: |-
        (time() - {{ $newest }} > {{ $maxAge }})
          and ({{ $newest }} > 0)
      for: 5m
      labels:
        severity: critical
      annotations:
        summary: {{`caretaker backup in {{ $labels.namespace }}/{{ $labels.pod }} is {{ $value | humanizeDuration }} old`}}
        description: {{ printf "The newest snapshot in the repository and the sidecar's last successful backup are older than %ds. Check the sidecar's logs and /status." $maxAge | quote }}
    - alert: CaretakerNoBackupYet
      expr: |-
        {{ $newest }} == 0
      for: {{ $maxAge }}s
      labels:
        severity: critical
      annotations:
        summary: {{`caretaker in {{ $labels.namespace }}/{{ $labels.pod }} has no backup yet`}}
        description: {{ printf "The repository holds no snapshot and no backup succeeded within %ds of the sidecar's start." $maxAge | quote }}
    - alert: CaretakerJobFailing
      expr: |-
        caretaker_job_last_failure_timestamp_seconds{{ $matchers }}
          > {{ $success }}
      for: {{ $r.jobFailingFor }}
      labels:
        severity: warning
      annotations:
        summary: {{`caretaker job {{ $labels.task }} failed on its last run`}}
        description: "The job's last run failed after its retries. Its error is in the sidecar's log and /status."
    - alert: CaretakerRestoreFailed
      expr: |-
        caretaker_restore_outcome{outcome="failed"{{ $and }}} == 1
      labels:
        severity: critical
      annotations:
        summary: {{`caretaker restore failed in {{ $labels.pod }}`}}
        description: "The init container recorded a failed restore; the app did not start on this data."
    - alert: CaretakerRestoreCrashLooping
      expr: |-
        increase(kube_pod_init_container_status_restarts_total{container="caretaker-restore"{{ $ns }}}[{{ $r.restoreCrashLoopWindow }}]) > 0
      labels:
        severity: critical
      annotations:
        summary: {{`caretaker restore keeps failing in {{ $labels.namespace }}/{{ $labels.pod }}`}}
        description: "The restore init container exited non-zero and was restarted (kube-state-metrics). Its exit code says why: see the README's exit code table."
{{- end }}
