#!/usr/bin/env python3
"""A pbc client with only Python's standard library and no code from pbc:
it opens a session, submits a project, acts on it, and reads its history.

    python3 python_client.py HOST PORT LIAISON_TOKEN COORDINATOR_TOKEN

Prints one line per step and "ok" at the end; exits non-zero on any surprise.
"""
import json
import socket
import sys


class Client:
    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=10)
        self.reader = self.sock.makefile("r", encoding="utf-8", newline="\n")
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        request = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.sock.sendall((json.dumps(request) + "\n").encode("utf-8"))
        response = json.loads(self.reader.readline())
        if response.get("id") != self.next_id:
            raise SystemExit(f"answer to the wrong request: {response}")
        if "error" in response:
            raise RuntimeError(response["error"])
        return response["result"]

    def hello(self, token):
        return self.call("session.hello", protocol=1, token=token, client="python-stdlib/1")

    def close(self):
        self.sock.close()


def main():
    host, port, liaison_token, coordinator_token = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]

    liaison = Client(host, port)
    who = liaison.hello(liaison_token)
    print("session", who["principal"]["name"], "protocol", who["protocol"])
    submitted = liaison.call(
        "task.submit",
        idempotencyKey="python-1",
        workflow="pbf-project",
        title="Women mediators network, Kayanza",
        leadAgency="undp",
        participants=[{"agency": "unwomen", "role": "implementing"}],
        country="BDI",
        locations=["Kayanza"],
        sectors=["15220", "15170"],
        period={"start": "2027-03-01", "end": "2028-12-31"},
        budget={"amount": "950000.00", "currency": "USD"},
        fields={"genderMarker": 3, "facility": "IRF"},
    )
    task = submitted["task"]
    print("submitted", task["ref"], task["state"])
    if task["state"] != "technical_review":
        raise SystemExit(f"unexpected state {task['state']}")

    coordinator = Client(host, port)
    coordinator.hello(coordinator_token)
    acted = coordinator.call("task.act", task=task["ref"], action="recommend", expectedVersion=task["version"])
    print("acted", acted["task"]["state"])
    try:
        coordinator.call("task.act", task=task["ref"], action="recommend", expectedVersion=task["version"])
        raise SystemExit("a stale version was accepted")
    except RuntimeError as error:
        code = error.args[0]["code"]
        print("stale version refused", code)
        if code != -32009:
            raise SystemExit(f"expected -32009, got {code}")

    history = liaison.call("task.history", task=task["ref"])
    states = [event["to"] for event in history["items"] if event["to"]]
    print("history", " > ".join(states))
    if states[-1] != "asg_approval":
        raise SystemExit(f"history ends in {states[-1]}")
    liaison.close()
    coordinator.close()
    print("ok")


if __name__ == "__main__":
    main()
