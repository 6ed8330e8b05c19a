"""Labels a driver report carries, and the client class names that stand for each interface.

For the standard interfaces the `jumpstarter.dev/client` label is upstream Jumpstarter's
client class path, so upstream's client binds its own classes to our exporter; ours maps
the same names to its classes through the `jumpstarter_lab.clients` entry points.
"""

CLIENT = "jumpstarter.dev/client"  # which client class a driver wants
NAME = "jumpstarter.dev/name"  # a driver's name under its parent, and an exporter's own name
READ_ONLY = "jumpstarter.lab/read-only"  # comma-separated methods that change nothing (ours; upstream ignores it)
HOOKS = "jumpstarter.lab/hooks"  # on the root report at Register: the lease hooks an exporter runs (ours)

COMPOSITE = "jumpstarter_driver_composite.client.CompositeClient"
PROXY = "jumpstarter_driver_composite.client.ProxyClient"
POWER = "jumpstarter_driver_power.client.PowerClient"
SERIAL = "jumpstarter_driver_pyserial.client.PySerialClient"
NETWORK = "jumpstarter_driver_network.client.NetworkClient"
STORAGE_MUX = "jumpstarter_driver_opendal.client.StorageMuxClient"
SHELL = "jumpstarter_driver_shell.client.ShellClient"
DIGITAL_OUTPUT = "jumpstarter_driver_gpiod.client.DigitalOutputClient"
DIGITAL_INPUT = "jumpstarter_driver_gpiod.client.DigitalInputClient"
