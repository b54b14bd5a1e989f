{{/*
Names and labels shared by every template.
*/}}

{{- define "repsys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "repsys.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "repsys.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that select the pods of the release (all components). */}}
{{- define "repsys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "repsys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "repsys.labels" -}}
helm.sh/chart: {{ include "repsys.chart" . }}
{{ include "repsys.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: repsys
{{- end -}}

{{/* The name of one component's resources: <fullname>-<component>. Call with (list $ "rules"). */}}
{{- define "repsys.componentName" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "repsys.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "repsys.componentSelectorLabels" -}}
{{- $root := index . 0 -}}
{{ include "repsys.selectorLabels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "repsys.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "repsys.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "repsys.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "repsys.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "repsys.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The sentinels as host:port items: the explicit list, or the OT redis-operator's Service.
*/}}
{{- define "repsys.sentinelHosts" -}}
{{- $s := .Values.redis.sentinel -}}
{{- if $s.hosts -}}
{{- toJson $s.hosts -}}
{{- else -}}
{{- $ns := default .Release.Namespace $s.namespace -}}
{{- list (printf "%s-sentinel.%s.svc:%d" $s.name $ns (int $s.port)) | toJson -}}
{{- end -}}
{{- end -}}

{{/*
The configuration file: the user's `config` with the sections the chart owns written over
it (redis, database, http, and where the web app listens). Secrets appear only as
{env: NAME} references to variables the pods take from existing Secrets.
*/}}
{{- define "repsys.config" -}}
{{- $cfg := deepCopy (default (dict) .Values.config) -}}
{{- $r := .Values.redis -}}
{{- $redis := dict "mode" $r.mode "socket_timeout_s" $r.socketTimeoutSeconds "health_check_interval_s" $r.healthCheckIntervalSeconds -}}
{{- if ne $r.mode "sentinel" -}}
{{- $_ := set $redis "url" $r.url -}}
{{- end -}}
{{- if eq $r.mode "sentinel" -}}
{{- $sentinel := dict "master_name" $r.sentinel.masterName "sentinels" (include "repsys.sentinelHosts" . | fromJsonArray) -}}
{{- if $r.auth.sentinelExistingSecret -}}
{{- $_ := set $sentinel "password" (dict "env" "REPSYS_REDIS_SENTINEL_PASSWORD") -}}
{{- end -}}
{{- $_ := set $redis "sentinel" $sentinel -}}
{{- end -}}
{{- if $r.auth.existingSecret -}}
{{- $_ := set $redis "password" (dict "env" "REPSYS_REDIS_PASSWORD") -}}
{{- end -}}
{{- $_ := set $cfg "redis" $redis -}}
{{- $db := dict "url" (required "database.url is required: the SQL database the processes share (PostgreSQL)" .Values.database.url) "pool_size" .Values.database.poolSize -}}
{{- if .Values.database.existingSecret -}}
{{- $_ := set $db "password" (dict "env" "REPSYS_DB_PASSWORD") -}}
{{- end -}}
{{- $_ := set $cfg "database" $db -}}
{{- $_ := set $cfg "http" (dict "host" "0.0.0.0" "port" (int .Values.metricsPort)) -}}
{{- $web := deepCopy (default (dict) $cfg.web) -}}
{{- $_ := set $web "host" "0.0.0.0" -}}
{{- $_ := set $web "port" (int .Values.components.web.port) -}}
{{- $_ := set $cfg "web" $web -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Environment variables from existing Secrets, referenced by the config file. */}}
{{- define "repsys.secretEnv" -}}
{{- $r := .Values.redis -}}
{{- if $r.auth.existingSecret }}
- name: REPSYS_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $r.auth.existingSecret }}
      key: {{ $r.auth.passwordKey }}
{{- end }}
{{- if and (eq $r.mode "sentinel") $r.auth.sentinelExistingSecret }}
- name: REPSYS_REDIS_SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $r.auth.sentinelExistingSecret }}
      key: {{ $r.auth.sentinelPasswordKey }}
{{- end }}
{{- if .Values.database.existingSecret }}
- name: REPSYS_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.passwordKey }}
{{- end }}
{{- range .Values.secretEnv }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
{{- end }}
{{- end -}}

{{/* The config file's checksum, so pods restart when the config changes. */}}
{{- define "repsys.configChecksum" -}}
{{- include "repsys.config" . | sha256sum -}}
{{- end -}}
