"""GPIO: digital outputs and inputs on a Linux GPIO chip through libgpiod, a power switch
on an output, and mocks whose lines are simulated wires (an output and an input on the
same mock chip and line see each other, as a loopback)."""
