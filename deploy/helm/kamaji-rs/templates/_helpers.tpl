{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "kamaji-rs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name, plus the chart name unless the release already contains it. */}}
{{- define "kamaji-rs.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kamaji-rs.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "kamaji-rs.labels" -}}
helm.sh/chart: {{ include "kamaji-rs.chart" . }}
{{ include "kamaji-rs.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels selecting the operator's pods. */}}
{{- define "kamaji-rs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kamaji-rs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kamaji-rs.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kamaji-rs.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The metrics Service's name: also the `job` label Prometheus gives its targets. */}}
{{- define "kamaji-rs.metricsService" -}}
{{- printf "%s-metrics" (include "kamaji-rs.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
