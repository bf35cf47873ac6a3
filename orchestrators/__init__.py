"""Orchestrator functions: deterministic generators that only yield durable tasks."""

from orchestrators import analyze_url, enrich_incident

blueprints = (analyze_url.bp, enrich_incident.bp)
