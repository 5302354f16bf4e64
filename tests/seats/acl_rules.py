"""The access rules the seat engine's and the license server's ACL tests run against.

Rule numbers, as the server log names them: #1 denies mallory, #2 denies 192.168.0.0/16
for 10101:1, #3 is MAX 1 seat for carol, #4 reserves 1 seat for the eng group (alice, bob).
"""

ACL = """
[groups]
eng = ["alice", "bob"]

[[rules]]
action = "deny"
users = ["mallory"]

[[rules]]
action = "deny"
ips = ["192.168.0.0/16"]
product = "10101:1"

[[rules]]
action = "max"
product = "10101:1"
users = ["carol"]
seats = 1

[[rules]]
action = "reserve"
product = "10101:1"
groups = ["eng"]
seats = 1
"""
