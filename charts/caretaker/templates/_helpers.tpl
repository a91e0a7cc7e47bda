{{/*
Named templates of the caretaker chart.

Public templates (other charts may include them; see docs/chart.md) take a dict with
  values: the caretaker values (this chart's .Values, or a parent's .Values.caretaker,
          which Helm fills with this chart's defaults when caretaker is a dependency)
  root:   the top-level context ($), for .Release and .Capabilities
and render YAML list items or map entries to be placed with nindent:
  caretaker.initContainers  restore init container (+ the native sidecar)
  caretaker.containers      the classic sidecar (nothing when sidecar.native)
  caretaker.volumes         caretaker's own volumes (tmp, config, file secret)
  caretaker.podLabels       labels the metrics Service selects
  caretaker.podAnnotations  a config checksum, so pods roll when the jobs change
The data volume itself belongs to the pod (values.data.volumeName).
*/}}

{{- define "caretaker.name" -}}
{{- default "caretaker" .values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name; the chart name is fixed so a parent chart computes the same names. */}}
{{- define "caretaker.fullname" -}}
{{- if .values.fullnameOverride }}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default "caretaker" .values.nameOverride }}
{{- if contains $name .root.Release.Name }}
{{- .root.Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .root.Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "caretaker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "caretaker.name" . }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- end }}

{{- define "caretaker.labels" -}}
helm.sh/chart: {{ printf "caretaker-%s" .root.Chart.Version | replace "+" "_" }}
{{ include "caretaker.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "caretaker.podLabels" -}}
caretaker/instance: {{ include "caretaker.fullname" . }}
{{- end }}

{{- define "caretaker.serviceAccountName" -}}
{{- if .values.serviceAccount.create }}
{{- default (include "caretaker.fullname" .) .values.serviceAccount.name }}
{{- else }}
{{- default "default" .values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "caretaker.image" -}}
{{- $image := .values.image }}
{{- if $image.digest }}
{{- printf "%s@%s" $image.repository $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag | toString) }}
{{- end }}
{{- end }}

{{/* The sidecar's YAML config (contract: docs/sidecar.md); repository and secrets come from env. */}}
{{- define "caretaker.config" -}}
{{- $s := .values.sidecar -}}
path: {{ .values.data.mountPath }}
listen: {{ printf ":%v" $s.port | quote }}
{{- with $s.rpo }}
rpo: {{ . }}
{{- end }}
shutdown:
  grace: {{ $s.shutdown.grace }}
  backup_on_shutdown: {{ $s.shutdown.backupOnShutdown }}
{{- with $s.defaults }}
defaults:
  {{- toYaml . | nindent 2 }}
{{- end }}
jobs:
{{- range $name, $job := $s.jobs }}
{{- if and $job (ne (toString (dig "enabled" true $job)) "false") }}
  - name: {{ $name }}
    {{- toYaml (omit $job "enabled" "name") | nindent 4 }}
{{- end }}
{{- end }}
{{- end }}

{{- define "caretaker.podAnnotations" -}}
checksum/caretaker-config: {{ include "caretaker.config" . | sha256sum }}
{{- end }}

{{/* The Secret whose keys become environment variables: credentials.existingSecret, or
its older name credentials.envSecret (both work; naming two different Secrets is refused). */}}
{{- define "caretaker.envSecret" -}}
{{- $c := .values.credentials }}
{{- if and $c.existingSecret $c.envSecret (ne $c.existingSecret $c.envSecret) }}
{{- fail (printf "caretaker: credentials.existingSecret (%s) and credentials.envSecret (%s) name different Secrets: set one (envSecret is the older name of existingSecret)" $c.existingSecret $c.envSecret) }}
{{- end }}
{{- if and $c.existingSecretKeys (not (or $c.existingSecret $c.envSecret)) }}
{{- fail "caretaker: credentials.existingSecretKeys needs credentials.existingSecret (the Secret holding those keys)" }}
{{- end }}
{{- default $c.envSecret $c.existingSecret }}
{{- end }}

{{/* Environment both containers share: where the repository is and how to reach it. */}}
{{- define "caretaker.env" -}}
{{- $v := .values }}
{{- $repo := $v.repository }}
{{- $secret := include "caretaker.envSecret" . }}
{{- if and (not $repo.url) (not $secret) }}
{{- fail "caretaker: set repository.url (or put CARETAKER_REPOSITORY into credentials.existingSecret)" }}
{{- end }}
{{- /* For per-pod repository paths: repository.url may say s3://bucket/app/$(POD_NAME). */}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- /* Who holds the repository's writer claim: this pod, and this incarnation of its name. */}}
- name: CARETAKER_POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: CARETAKER_POD_UID
  valueFrom:
    fieldRef:
      fieldPath: metadata.uid
{{- with $repo.url }}
- name: CARETAKER_REPOSITORY
  value: {{ . | quote }}
{{- end }}
- name: CARETAKER_PATH
  value: {{ $v.data.mountPath | quote }}
{{- include "caretaker.encryptionEnv" . }}
- name: HOME
  value: /tmp
{{- $env := dict
  "CARETAKER_S3_ENDPOINT" $repo.s3.endpoint
  "CARETAKER_S3_REGION" $repo.s3.region
  "CARETAKER_S3_SSE" $repo.s3.sse
  "CARETAKER_S3_SSE_KMS_KEY_ID" $repo.s3.sseKmsKeyId
  "CARETAKER_S3_STORAGE_CLASS" $repo.s3.storageClass
  "CARETAKER_S3_CA_BUNDLE" $repo.s3.caBundle
  "CARETAKER_GIT_AUTHOR" $repo.git.author
}}
{{- if $repo.s3.pathStyle }}{{ $_ := set $env "CARETAKER_S3_PATH_STYLE" "true" }}{{ end }}
{{- if $repo.git.acceptNewHostKeys }}{{ $_ := set $env "CARETAKER_GIT_ACCEPT_NEW_HOST_KEYS" "true" }}{{ end }}
{{- with $repo.git.sshKey }}
{{- $_ := set $env "CARETAKER_GIT_SSH_KEY_FILE" (printf "%s/%s" $v.credentials.fileMountPath .) }}
{{- end }}
{{- with $repo.git.knownHosts }}
{{- $_ := set $env "CARETAKER_GIT_KNOWN_HOSTS_FILE" (printf "%s/%s" $v.credentials.fileMountPath .) }}
{{- end }}
{{- range $name, $value := $env }}
{{- if $value }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}
{{- /* Only the keys named, as these variables (instead of envFrom of every key). */}}
{{- range $name, $key := $v.credentials.existingSecretKeys }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The repository's password, from a Secret; required unless opted out (or git, which cannot be encrypted). */}}
{{- define "caretaker.encryptionEnv" -}}
{{- $e := .values.encryption }}
{{- $git := hasPrefix "git+" (toString .values.repository.url) }}
{{- if and $git $e.passwordSecret }}
{{- fail "caretaker: encryption.passwordSecret is set, but git repositories store browsable files and cannot be encrypted: remove it" }}
{{- end }}
{{- if and $e.passwordSecret $e.insecureNoEncryption }}
{{- fail "caretaker: set encryption.passwordSecret or encryption.insecureNoEncryption, not both" }}
{{- end }}
{{- if not (or $git $e.passwordSecret $e.insecureNoEncryption) }}
{{- fail "caretaker: set encryption.passwordSecret to an existing Secret holding the repository's password (keep a copy outside the cluster: losing it loses the backups), or encryption.insecureNoEncryption=true" }}
{{- end }}
{{- if $e.passwordSecret }}
- name: CARETAKER_PASSWORD_FILE
  value: {{ printf "/etc/caretaker/password/%s" $e.passwordKey | quote }}
{{- else if $e.insecureNoEncryption }}
- name: CARETAKER_INSECURE_NO_ENCRYPTION
  value: "true"
{{- end }}
{{- end }}

{{- define "caretaker.mounts" -}}
- name: {{ .values.data.volumeName }}
  mountPath: {{ .values.data.mountPath }}
  {{- with .values.data.subPath }}
  subPath: {{ . }}
  {{- end }}
- name: caretaker-tmp
  mountPath: /tmp
{{- if .values.credentials.fileSecret }}
- name: caretaker-secrets
  mountPath: {{ .values.credentials.fileMountPath }}
  readOnly: true
{{- end }}
{{- if .values.encryption.passwordSecret }}
- name: caretaker-password
  mountPath: /etc/caretaker/password
  readOnly: true
{{- end }}
{{- end }}

{{/* What both caretaker containers share besides env and mounts. */}}
{{- define "caretaker.containerCommon" -}}
image: {{ include "caretaker.image" . }}
imagePullPolicy: {{ .values.image.pullPolicy }}
{{- $secret := include "caretaker.envSecret" . }}
{{- if and $secret (not .values.credentials.existingSecretKeys) }}
envFrom:
  - secretRef:
      name: {{ $secret }}
{{- end }}
securityContext:
  {{- toYaml .values.securityContext | nindent 2 }}
terminationMessagePolicy: FallbackToLogsOnError
{{- end }}

{{/* restore.allowEmpty as a mode: never | new-repository | always (true/false: the older form). */}}
{{- define "caretaker.allowEmpty" -}}
{{- $value := toString .values.restore.allowEmpty }}
{{- if eq $value "true" }}always{{ else if eq $value "false" }}never{{ else }}{{ $value }}{{ end }}
{{- end }}

{{- define "caretaker.restoreContainer" -}}
{{- $v := .values }}
{{- $r := $v.restore -}}
- name: caretaker-restore
  {{- include "caretaker.containerCommon" . | nindent 2 }}
  args: ["restore"]
  env:
    {{- include "caretaker.env" . | trim | nindent 4 }}
    - name: CARETAKER_SNAPSHOT
      value: {{ $r.snapshot | quote }}
    - name: CARETAKER_TIMEOUT
      value: {{ $r.timeout | quote }}
    - name: CARETAKER_MAX_FALLBACKS
      value: {{ $r.maxFallbacks | quote }}
    {{- $empty := include "caretaker.allowEmpty" . }}
    {{- if ne $empty "never" }}
    - name: CARETAKER_ALLOW_EMPTY
      value: {{ $empty | quote }}
    {{- end }}
    {{- if $r.force }}
    - name: CARETAKER_FORCE
      value: "true"
    {{- end }}
    {{- with $r.checkCommand }}
    - name: CARETAKER_CHECK_CMD
      value: {{ . | quote }}
    {{- end }}
  volumeMounts:
    {{- include "caretaker.mounts" . | nindent 4 }}
  resources:
    {{- toYaml $r.resources | nindent 4 }}
{{- end }}

{{- define "caretaker.probe" -}}
{{- $probe := omit .probe "enabled" -}}
httpGet:
  path: {{ .path }}
  port: ct-metrics
{{- toYaml $probe | nindent 0 }}
{{- end }}

{{- define "caretaker.sidecarContainer" -}}
{{- $v := .values }}
{{- $s := $v.sidecar }}
{{- if and $s.native (semverCompare "<1.29-0" .root.Capabilities.KubeVersion.Version) }}
{{- fail (printf "caretaker: sidecar.native needs Kubernetes >= 1.29 (target is %s)" .root.Capabilities.KubeVersion.Version) }}
{{- end -}}
- name: caretaker
  {{- include "caretaker.containerCommon" . | nindent 2 }}
  {{- if $s.native }}
  restartPolicy: Always
  {{- end }}
  args: ["sidecar"]
  env:
    {{- include "caretaker.env" . | trim | nindent 4 }}
    - name: CARETAKER_CONFIG
      value: /etc/caretaker/config/config.yaml
  ports:
    - name: ct-metrics
      containerPort: {{ $s.port }}
      protocol: TCP
  volumeMounts:
    {{- include "caretaker.mounts" . | nindent 4 }}
    - name: caretaker-config
      mountPath: /etc/caretaker/config
      readOnly: true
  {{- if $s.livenessProbe.enabled }}
  livenessProbe:
    {{- include "caretaker.probe" (dict "probe" $s.livenessProbe "path" "/healthz") | nindent 4 }}
  {{- end }}
  {{- if $s.readinessProbe.enabled }}
  readinessProbe:
    {{- include "caretaker.probe" (dict "probe" $s.readinessProbe "path" "/readyz") | nindent 4 }}
  {{- end }}
  resources:
    {{- toYaml $s.resources | nindent 4 }}
{{- end }}

{{- define "caretaker.initContainers" -}}
{{- $out := list }}
{{- if .values.restore.enabled }}
{{- $out = append $out (include "caretaker.restoreContainer" . | trim) }}
{{- end }}
{{- if and .values.sidecar.enabled .values.sidecar.native }}
{{- $out = append $out (include "caretaker.sidecarContainer" . | trim) }}
{{- end }}
{{- join "\n" $out }}
{{- end }}

{{- define "caretaker.containers" -}}
{{- if and .values.sidecar.enabled (not .values.sidecar.native) }}
{{- include "caretaker.sidecarContainer" . | trim }}
{{- end }}
{{- end }}

{{- define "caretaker.volumes" -}}
- name: caretaker-tmp
  emptyDir:
    sizeLimit: {{ .values.tmpSizeLimit }}
- name: caretaker-config
  configMap:
    name: {{ include "caretaker.fullname" . }}
{{- with .values.credentials.fileSecret }}
- name: caretaker-secrets
  secret:
    secretName: {{ . }}
    defaultMode: 288  {{- /* 0440: readable by the pod's fsGroup, not by others */}}
{{- end }}
{{- with .values.encryption.passwordSecret }}
- name: caretaker-password
  secret:
    secretName: {{ . }}
    defaultMode: 288
{{- end }}
{{- end }}
