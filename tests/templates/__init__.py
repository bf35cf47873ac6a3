"""Static checks of the Azure deployment: Bicep, host.json, operator scripts."""
