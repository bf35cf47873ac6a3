"""Orchestrator functions: deterministic generators that only yield durable tasks."""

from orchestrators import analyze_file, analyze_url, enrich_incident

blueprints = (analyze_url.bp, analyze_file.bp, enrich_incident.bp)
