#!/usr/bin/env python3
"""Writes Vigil's Grafana dashboards (dashboards/*.json) from the panel lists below.

Edit the lists, run `python3 deploy/grafana/generate.py`, commit both. The test
`dashboards::every_panel_expression_parses_and_names_exposed_metrics` checks what it writes:
every expression parses (promtool) and names only metrics the services expose
(docs/metrics.md), recording rules of deploy/prometheus/rules/, or Prometheus' own `up`.
"""

import json
import os
import pathlib

DS = {"type": "prometheus", "uid": "${datasource}"}
# VIGIL_GRAFANA_OUT: somewhere else (the test writes there and compares with the committed).
OUT = pathlib.Path(os.environ.get("VIGIL_GRAFANA_OUT", pathlib.Path(__file__).parent / "dashboards"))


def panel(title, exprs, unit="short", kind="timeseries", desc="", legend=None, w=12, h=8):
    """One panel; `exprs` is a list of (expr, legend) pairs or plain expressions."""
    targets = []
    for i, e in enumerate(exprs):
        expr, fmt = (e if isinstance(e, tuple) else (e, legend or ""))
        targets.append({"datasource": DS, "expr": expr, "legendFormat": fmt, "refId": chr(65 + i)})
    p = {
        "type": kind,
        "title": title,
        "description": desc,
        "datasource": DS,
        "targets": targets,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "gridPos": {"w": w, "h": h},
    }
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}
    return p


def dashboard(uid, title, desc, panels, variables=()):
    x = y = 0
    for i, p in enumerate(panels):
        if x + p["gridPos"]["w"] > 24:
            x, y = 0, y + 8
        p["gridPos"].update({"x": x, "y": y})
        p["id"] = i + 1
        x += p["gridPos"]["w"]
    templating = [
        {
            "name": "datasource",
            "type": "datasource",
            "query": "prometheus",
            "label": "Prometheus",
            "current": {},
            "hide": 0,
        }
    ]
    for name, query in variables:
        templating.append(
            {
                "name": name,
                "type": "query",
                "datasource": DS,
                "query": {"query": query, "refId": "var"},
                "definition": query,
                "includeAll": True,
                "multi": True,
                "allValue": ".*",
                "current": {"text": "All", "value": "$__all"},
                "refresh": 2,
            }
        )
    return {
        "uid": uid,
        "title": title,
        "description": desc,
        "tags": ["vigil"],
        "editable": True,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "timezone": "utc",
        "templating": {"list": templating},
        "annotations": {"list": []},
        "links": [{"title": "Vigil", "type": "dashboards", "tags": ["vigil"], "asDropdown": True}],
        "panels": panels,
    }


RI = "$__rate_interval"

fleet = dashboard(
    "vigil-fleet",
    "Vigil / Fleet overview",
    "Every Vigil service: up, traffic, errors, latency, the process, the database pool and the disk.",
    [
        panel("Services up", [('up{job=~"vigil.*"}', "{{job}} {{instance}}")], kind="stat", w=24, h=4,
              desc="1 when Prometheus scrapes the service (alert VigilServiceDown)."),
        panel("Requests per second", [(f'sum by (service) (rate(http_requests_total{{service=~"$service"}}[{RI}]))', "{{service}}")], "reqps"),
        panel("5xx ratio", [(f'sum by (service) (rate(http_requests_total{{service=~"$service",status=~"5.."}}[{RI}])) / sum by (service) (rate(http_requests_total{{service=~"$service"}}[{RI}]))', "{{service}}")], "percentunit",
              desc="Share of answers that are 5xx (alert VigilHigh5xxRatio)."),
        panel("Latency p99", [(f'histogram_quantile(0.99, sum by (service, le) (rate(http_request_duration_seconds_bucket{{service=~"$service"}}[{RI}])))', "{{service}}")], "s"),
        panel("Errors by code", [(f'sum by (service, code) (rate(http_errors_total{{service=~"$service"}}[{RI}]))', "{{service}} {{code}}")], "reqps"),
        panel("Resident memory", [('process_resident_memory_bytes{job=~"vigil.*"}', "{{job}} {{instance}}")], "bytes"),
        panel("CPU", [(f'rate(process_cpu_seconds_total{{job=~"vigil.*"}}[{RI}])', "{{job}} {{instance}}")], "percentunit"),
        panel("Open file descriptors", [('process_open_fds{job=~"vigil.*"} / process_max_fds{job=~"vigil.*"}', "{{job}} {{instance}}")], "percentunit"),
        panel("Database pool in use", [('sum without (state) (vigil_db_pool_connections{state="in_use"}) / vigil_db_pool_max_connections', "{{service}} {{instance}}")], "percentunit",
              desc="Connections in use over the pool's maximum (alert VigilDbPoolExhausted)."),
        panel("Database pool timeouts", [(f'increase(vigil_db_pool_timeouts_total[{RI}])', "{{service}} {{instance}}")],
              desc="Waits for a connection that ran out of time (alert VigilDbPoolTimeouts)."),
        panel("Disk free", [("vigil_disk_free_bytes / vigil_disk_size_bytes", "{{service}} {{path}}")], "percentunit",
              desc="Free share of the disk holding each data directory (alerts VigilDiskSpaceLow, VigilDiskFillingUp)."),
        panel("Versions", [("vigil_build_info", "{{service}} {{version}} {{instance}}")], kind="table"),
    ],
    variables=[("service", "label_values(http_requests_total, service)")],
)

audit = dashboard(
    "vigil-audit",
    "Vigil / Audit pipeline",
    "From producers to the chain: ingest, group commits, Kafka lag, gaps, checkpoints, verification, retention.",
    [
        panel("Ingest by result", [(f"sum by (result) (rate(audit_events_processed_total[{RI}]))", "{{result}}")], "ops",
              desc="Events stored, duplicate, rejected, conflict (alert VigilAuditIngestRejections)."),
        panel("Ingest latency", [
            (f"histogram_quantile(0.5, sum by (le) (rate(audit_ingest_duration_seconds_bucket[{RI}])))", "p50"),
            (f"histogram_quantile(0.99, sum by (le) (rate(audit_ingest_duration_seconds_bucket[{RI}])))", "p99"),
        ], "s"),
        panel("Group commits", [
            (f"histogram_quantile(0.99, sum by (le) (rate(audit_group_commit_duration_seconds_bucket[{RI}])))", "p99 duration"),
            (f"sum(rate(audit_group_commit_size_sum[{RI}])) / sum(rate(audit_group_commit_size_count[{RI}]))", "events per commit"),
        ], "s"),
        panel("Store errors", [(f"sum by (op, kind) (rate(audit_store_errors_total[{RI}]))", "{{op}} {{kind}}")], "ops",
              desc="Store errors by operation and kind; unavailable pages (alert VigilAuditStoreDown)."),
        panel("Consumer lag", [
            ("max by (instance) (audit_consumer_lag_seconds)", "{{instance}} seconds"),
        ], "s", desc="Kafka: how far stored events trail the topic (alert VigilAuditConsumerLag)."),
        panel("Consumer lag (messages)", [("sum by (instance) (audit_consumer_lag_messages)", "{{instance}}")]),
        panel("Chain gaps", [("increase(audit_chain_gap_total[1h])", "{{instance}}")],
              desc="producer_seq values skipped: events lost before Vigil (alert VigilAuditChainGap)."),
        panel("Checkpoints", [(f"rate(audit_checkpoints_total[{RI}]) * 60", "{{instance}} per minute")]),
        panel("Chain verification", [
            (f"sum by (result) (increase(audit_verifications_total[1h]))", "{{result}}"),
        ], desc="Background verification results per hour (alerts VigilAuditChainDamaged, VigilAuditVerificationErrors)."),
        panel("Damaged tenants", [("max(audit_verification_damaged_tenants)", "damaged")], kind="stat",
              desc="Tenants whose last verification found damage: anything but 0 is an incident."),
        panel("Since last verification", [("time() - max(audit_verification_last_run_timestamp_seconds)", "age")], "s", kind="stat"),
        panel("Dead-lettered", [(f"sum by (reason) (rate(audit_dlq_total[{RI}]))", "{{reason}}")], "ops"),
        panel("Producer queues and spools", [
            ("sum by (job, instance) (audit_producer_queue_depth)", "{{job}} queue"),
            ("sum by (job, instance) (audit_producer_spool_bytes)", "{{job}} spool bytes"),
        ]),
        panel("Producer losses", [(f"sum by (reason) (rate(audit_producer_dropped_total[{RI}]))", "{{reason}}")], "ops"),
        panel("Retention", [
            (f"increase(audit_retention_deleted_total[1d])", "records purged per day"),
            ("time() - audit_retention_last_run_timestamp_seconds", "seconds since last run"),
        ]),
        panel("Erasures", [("increase(audit_subjects_erased_total[1d])", "subjects erased per day")]),
    ],
)

gateway = dashboard(
    "vigil-gateway",
    "Vigil / Gateway and rate limiter",
    "The gateway's decisions: checks and rejections by tenant, the deciding engine, decision and upstream latency.",
    [
        panel("Deciding engine", [("max by (instance, engine) (gateway_rate_limiter_backend)", "{{instance}} {{engine}}")], kind="stat", w=24, h=4,
              desc="1 for the engine that decides now: memory while Redis is away (alert VigilRateLimiterFallback)."),
        panel("Rate-limit checks", [(f"sum by (engine, outcome) (rate(gateway_rate_limit_checks_total[{RI}]))", "{{engine}} {{outcome}}")], "ops"),
        panel("Rejections by tenant", [(f"topk(10, sum by (tenant) (rate(gateway_tenant_rejections_total[{RI}])))", "{{tenant}}")], "reqps",
              desc="The ten tenants refused most (alert VigilTenantRejectionSpike)."),
        panel("Rejections by mode", [(f"sum by (mode) (rate(gateway_rate_limit_rejections_total[{RI}]))", "{{mode}}")], "reqps"),
        panel("Decision latency p99", [(f"histogram_quantile(0.99, sum by (engine, le) (rate(gateway_rate_limiter_decision_seconds_bucket[{RI}])))", "{{engine}}")], "s"),
        panel("Engine changes", [("increase(gateway_rate_limiter_transitions_total[1h])", "to {{to}}")]),
        panel("Burst in use", [(f"histogram_quantile(0.9, sum by (le) (rate(gateway_rate_window_usage_bucket[{RI}])))", "p90")], "percentunit"),
        panel("Upstream latency p99", [(f"histogram_quantile(0.99, sum by (route, le) (rate(gateway_upstream_seconds_bucket[{RI}])))", "{{route}}")], "s"),
        panel("Upstream answers", [(f"sum by (route, status) (rate(gateway_upstream_responses_total[{RI}]))", "{{route}} {{status}}")], "reqps"),
    ],
)

auth = dashboard(
    "vigil-auth",
    "Vigil / Auth and JWKS",
    "Tokens issued and verified, logins, the signing key's age and every verifier's JWKS cache.",
    [
        panel("Tokens issued", [(f"sum by (grant) (rate(auth_tokens_issued_total[{RI}]))", "{{grant}}")], "ops"),
        panel("Logins", [(f"sum by (outcome) (rate(auth_logins_total[{RI}]))", "{{outcome}}")], "ops"),
        panel("Throttled logins", [(f"sum by (scope) (rate(auth_login_throttled_total[{RI}]))", "{{scope}}")], "ops"),
        panel("Token verification outcomes", [(f"sum by (outcome) (rate(jwt_verifications_total[{RI}]))", "{{outcome}}")], "ops",
              desc="Across every verifier (alert VigilTokenVerificationFailures)."),
        panel("Token verification p99", [(f"histogram_quantile(0.99, sum by (le) (rate(jwt_verification_seconds_bucket[{RI}])))", "p99")], "s"),
        panel("Signing key age", [("time() - auth_signing_key_activated_timestamp_seconds", "{{instance}}")], "s", kind="stat",
              desc="How long the current signing key has signed; rotation resets it."),
        panel("JWKS stale", [("max by (job, instance) (jwks_stale)", "{{job}} {{instance}}")], kind="stat",
              desc="1 while a verifier cannot refresh the issuer's JWKS (alert VigilJwksStale)."),
        panel("JWKS age", [("time() - jwks_last_success_timestamp_seconds", "{{job}} {{instance}}")], "s"),
        panel("JWKS keys", [("jwks_keys", "{{job}} {{instance}}")]),
        panel("JWKS refreshes", [(f"sum by (outcome) (rate(jwks_refresh_total[{RI}]))", "{{outcome}}")], "ops"),
    ],
)

B_AV, B_LAT = "0.001", "0.01"
slo = dashboard(
    "vigil-slo",
    "Vigil / Error budget",
    "Availability (99.9% without 5xx) and latency (99% within 250 ms) per service over 30 days, and how fast each budget burns.",
    [
        panel("Availability over 30 days", [('1 - sum by (service) (increase(http_requests_total{service=~"$service",status=~"5.."}[30d])) / sum by (service) (increase(http_requests_total{service=~"$service"}[30d]))', "{{service}}")], "percentunit", kind="stat"),
        panel("Availability budget left", [(f'1 - (sum by (service) (increase(http_requests_total{{service=~"$service",status=~"5.."}}[30d])) / sum by (service) (increase(http_requests_total{{service=~"$service"}}[30d]))) / {B_AV}', "{{service}}")], "percentunit", kind="stat"),
        panel("Availability burn rate", [
            (f'vigil:http_error_ratio:rate1h{{service=~"$service"}} / {B_AV}', "{{service}} 1h"),
            (f'vigil:http_error_ratio:rate6h{{service=~"$service"}} / {B_AV}', "{{service}} 6h"),
            (f'vigil:http_error_ratio:rate1d{{service=~"$service"}} / {B_AV}', "{{service}} 1d"),
        ], desc="1 spends the budget exactly in 30 days; 14.4 over 1h pages (alerts VigilAvailabilityBudgetBurnFast, VigilAvailabilityBudgetBurnSlow)."),
        panel("Latency over 30 days", [('sum by (service) (increase(http_request_duration_seconds_bucket{service=~"$service",le="0.25"}[30d])) / sum by (service) (increase(http_request_duration_seconds_count{service=~"$service"}[30d]))', "{{service}}")], "percentunit", kind="stat"),
        panel("Latency budget left", [(f'1 - (1 - sum by (service) (increase(http_request_duration_seconds_bucket{{service=~"$service",le="0.25"}}[30d])) / sum by (service) (increase(http_request_duration_seconds_count{{service=~"$service"}}[30d]))) / {B_LAT}', "{{service}}")], "percentunit", kind="stat"),
        panel("Latency burn rate", [
            (f'vigil:http_slow_ratio:rate1h{{service=~"$service"}} / {B_LAT}', "{{service}} 1h"),
            (f'vigil:http_slow_ratio:rate6h{{service=~"$service"}} / {B_LAT}', "{{service}} 6h"),
            (f'vigil:http_slow_ratio:rate1d{{service=~"$service"}} / {B_LAT}', "{{service}} 1d"),
        ], desc="Alerts VigilLatencyBudgetBurnFast, VigilLatencyBudgetBurnSlow."),
    ],
    variables=[("service", "label_values(http_requests_total, service)")],
)

for d in (fleet, audit, gateway, auth, slo):
    path = OUT / f"{d['uid']}.json"
    path.write_text(json.dumps(d, indent=2) + "\n")
    print(path)
