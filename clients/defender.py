"""Microsoft Defender for Endpoint API client.

Machines, advanced hunting, the Live Response library, `runliveresponse`
with RunScript, machine actions (status, cancel, result download link) and
alert comments. Tokens come from the managed identity with the
WindowsDefenderATP scope.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from clients import errors
from clients.credentials import BearerClient

# Defender states: Pending, InProgress, Succeeded, Failed, TimeOut, Cancelled.
FINAL_ACTION_STATES = ("Succeeded", "Failed", "TimeOut", "Cancelled")


class DefenderClient(BearerClient):
    service = "Defender"

    def get_machine(self, machine_id: str) -> dict[str, Any]:
        response = self.call("get machine", "GET", f"/api/machines/{quote(machine_id)}")
        return response.json()

    def find_machines(self, host_name: str) -> list[dict[str, Any]]:
        """Return machines whose computerDnsName is `host_name` (case as given)."""
        escaped = host_name.replace("'", "''")
        response = self.call(
            "find machine",
            "GET",
            "/api/machines",
            params={"$filter": f"computerDnsName eq '{escaped}'"},
        )
        return list(response.json().get("value") or [])

    def run_hunting(self, query: str) -> list[dict[str, Any]]:
        response = self.call(
            "run advanced hunting",
            "POST",
            "/api/advancedqueries/run",
            json={"Query": query},
        )
        return list(response.json().get("Results") or [])

    def list_library(self) -> list[dict[str, Any]]:
        response = self.call("list library files", "GET", "/api/libraryfiles")
        return list(response.json().get("value") or [])

    def upload_library_file(
        self, name: str, content: bytes, description: str, parameters: str
    ) -> dict[str, Any]:
        response = self.call(
            "upload library file",
            "POST",
            "/api/libraryfiles",
            files={"file": (name, content, "application/octet-stream")},
            data={
                "Description": description,
                "ParametersDescription": parameters,
                "HasParameters": "true",
                "OverrideIfExists": "true",
            },
        )
        return response.json()

    def run_script(
        self, machine_id: str, script: str, args: str, comment: str
    ) -> dict[str, Any]:
        """Start a Live Response RunScript; return the machine action."""
        body = {
            "Commands": [
                {
                    "type": "RunScript",
                    "params": [
                        {"key": "ScriptName", "value": script},
                        {"key": "Args", "value": args},
                    ],
                }
            ],
            "Comment": comment,
        }
        response = self.call(
            "run live response",
            "POST",
            f"/api/machines/{quote(machine_id)}/runliveresponse",
            json=body,
            idempotent=False,
        )
        return response.json()

    def get_action(self, action_id: str) -> dict[str, Any]:
        response = self.call(
            "get machine action", "GET", f"/api/machineactions/{quote(action_id)}"
        )
        return response.json()

    def list_actions(self, machine_id: str) -> list[dict[str, Any]]:
        escaped = machine_id.replace("'", "''")
        response = self.call(
            "list machine actions",
            "GET",
            "/api/machineactions",
            params={"$filter": f"machineId eq '{escaped}'"},
        )
        return list(response.json().get("value") or [])

    def get_alert(self, alert_id: str) -> dict[str, Any]:
        response = self.call("get alert", "GET", f"/api/alerts/{quote(alert_id)}")
        return response.json()

    def cancel_action(self, action_id: str, comment: str) -> dict[str, Any]:
        response = self.call(
            "cancel machine action",
            "POST",
            f"/api/machineactions/{quote(action_id)}/cancel",
            json={"Comment": comment},
        )
        return response.json()

    def script_result(self, action_id: str, index: int = 0) -> dict[str, Any]:
        """Fetch a RunScript command's result (script_output, exit_code, ...)."""
        response = self.call(
            "get live response result link",
            "GET",
            f"/api/machineactions/{quote(action_id)}/GetLiveResponseResultDownloadLink(index={index})",
        )
        link = response.json().get("value")
        if not link:
            raise errors.ApiError(
                self.service, "get live response result link", 200, "no link"
            )

        def download() -> httpx.Response:
            try:
                # The link is a short-lived SAS URL: it carries its own credential.
                answer = self._http.get(link, headers={})
            except httpx.TransportError as exc:
                raise self.transport_error(
                    "download live response result", exc
                ) from None
            self.raise_for_status("download live response result", answer)
            return answer

        return self.with_retries("download live response result", download).json()

    def comment_alert(self, alert_id: str, comment: str) -> dict[str, Any]:
        """Append a comment, without a retry in the client: a retry after a lost
        response would append it twice, so the caller checks the alert first."""
        response = self.call(
            "comment alert",
            "PATCH",
            f"/api/alerts/{quote(alert_id)}",
            json={"comment": comment},
            idempotent=False,
        )
        return response.json()
