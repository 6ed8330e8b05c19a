"""The controller: identities and tokens, leases, exporter registration and the router.

    server              Controller: one gRPC server with the three services, and its background tasks
    controller_service  jumpstarter.v1.ControllerService (exporters; clients dialing)
    client_service      jumpstarter.client.v1.ClientService (clients: exporters and leases)
    rpc                 what both share: authentication, errors to status codes, Lease messages
    router              RouterService: the rendezvous of a client's and an exporter's stream
    leases              the lease verbs (create, keepalive, release, schedule) and reads
    lease_record        LeaseRecord, its states and the moves between them
    lease_policy        pure scheduling: expiry, grants, queue positions, online-ness
    lease_writer        the one writer thread: batches, the lease clock, other replicas' rows
    exporters           registration, heartbeats, status reports, the exporters as read
    dials               dials left for an exporter's Listen stream
    subscriptions       what a replica's streams wait on, without polling
    auth, store, selectors, tls
"""
