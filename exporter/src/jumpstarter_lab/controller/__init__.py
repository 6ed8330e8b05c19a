"""The controller: identities and tokens, leases, exporter registration and the router."""
