"""Drives a running server with the official Python `pusher` SDK.

usage: sdk_check.py HOST PORT SOCKET_ID
Prints one JSON object: the SDK's presence auth for SOCKET_ID and the answers of its API calls.
"""
import json
import sys

import pusher

host, port, socket_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = pusher.Pusher(app_id="1234", key="app-key", secret="app-secret", host=host, port=port, ssl=False)

out = {}
# json.dumps adds spaces and a numeric user_id: the server must verify the verbatim string.
auth = client.authenticate(channel="presence-py", socket_id=socket_id,
                           custom_data={"user_id": 10, "user_info": {"name": "Py"}})
out["auth"] = auth
out["trigger"] = client.trigger("py-chan", "py-event", {"from": "python"})
out["batch"] = client.trigger_batch([{"channel": "py-chan", "name": "py-batch", "data": "1"}])
out["channels"] = client.channels_info(prefix_filter="presence-", attributes=["user_count"])
out["channel"] = client.channel_info("py-chan", ["subscription_count"])
out["send_to_user"] = client.send_to_user("py-user", "py-direct", {"x": 1})
print(json.dumps(out))
