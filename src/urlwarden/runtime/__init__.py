"""What is in force: the runtime that owns the configuration, feeds and snapshot, and the decisions.

A request becomes a verdict in `engine`; a reload or feed update becomes a new snapshot through
`inforce.Runtime`, built in a child process by `offload`. Never imports mitmproxy.
"""
