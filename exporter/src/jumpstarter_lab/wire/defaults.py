"""Defaults both sides of a lease must agree on, defined once."""

LEASE_DURATION = 1800.0  # seconds a lease lasts at most, unless asked otherwise
LEASE_TTL = 600.0  # seconds a lease survives without being renewed, unless asked otherwise
MAX_LEASE_TTL = 3600.0
LEASE_WAIT = 300.0  # seconds a client waits in the queue for a grant
EXPORTER_GRACE = 15.0  # seconds an exporter may go unheard of before it counts as offline and loses its lease
ROUTER_DEADLINE = 30.0  # seconds the first side of a connection through the router waits for the other
LEASE_RENEW_EVERY = 10.0  # seconds between renewals of a lease in use (a lease's ttl should be longer)
CONTROLLER_CALL = 30.0  # seconds a client waits for the controller to answer one call
