"""Power: switch a board on and off, and read what it draws.

Drivers: MockPower (no hardware), CommandPower (commands on the exporter host),
Ykush (Yepkit USB hubs over hidraw) and HttpPower (smart plugs with an HTTP API);
every one reports upstream's PowerClient label, so either side's client drives it.
"""
