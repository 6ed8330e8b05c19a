"""The U-Boot driver: a node over a board's power and serial console, with the settings of its bootloader.

The dialogue itself (stopping autoboot, commands, TFTP, boot) runs in the client, on the
console stream, as upstream's `jumpstarter_driver_uboot` does; so this driver and upstream's
serve each other's clients. Its children are the board's `power` and `serial` (usually
`ref:` entries naming drivers of the board).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jumpstarter_lab.driver import Driver, Interface, call, export

LABEL = "jumpstarter_driver_uboot.client.UbootConsoleClient"  # upstream's, so its client binds too
REQUIRED_CHILDREN = ("power", "serial")


class UBootInterface(Interface):
    label = LABEL
    get_prompt = call("The prompt U-Boot shows when it waits for a command", read_only=True)
    get_settings = call("How to reach the prompt: prompt, interrupt, prompt_timeout, init_commands, max_line",
                        read_only=True)


@dataclass(kw_only=True)
class UBoot(UBootInterface, Driver):
    """U-Boot on a board: its power and serial children, and how to stop its autoboot"""

    prompt: str = "=> "
    interrupt: str = " "  # what stops the countdown (" " for "Hit any key"; set it for keyed autoboot)
    prompt_timeout: float = 60.0  # from power-on to the prompt
    init_commands: list[str] = field(default_factory=list)  # run at every prompt reached, e.g. "virtio scan"
    max_line: int = 256  # U-Boot's CONFIG_SYS_CBSIZE: longer command lines are cut by the bootloader

    def __post_init__(self):
        if not self.prompt.strip():
            raise ValueError("prompt: must show something, got an empty or blank prompt")
        if not self.interrupt:
            raise ValueError("interrupt: must be at least one character")
        if self.prompt_timeout <= 0:
            raise ValueError(f"prompt_timeout: must be more than zero seconds, got {self.prompt_timeout}")
        if self.max_line < 32:
            raise ValueError(f"max_line: U-Boot reads lines of at least 32 characters, got {self.max_line}")
        too_long = [command for command in self.init_commands if len(command) >= self.max_line]
        if too_long:
            raise ValueError(f"init_commands: {too_long[0]!r} is longer than max_line ({self.max_line})")

    def bind(self, **kwargs) -> UBoot:
        super().bind(**kwargs)
        missing = [name for name in REQUIRED_CHILDREN if name not in self.children]
        if missing:
            raise ValueError(f"U-Boot needs the board's {' and '.join(missing)} as children named "
                             f"{' and '.join(missing)} (e.g. `{missing[0]}: {{ref: board.{missing[0]}}}`)")
        return self

    @export(read_only=True)
    def get_prompt(self) -> str:
        """The prompt U-Boot shows when it waits for a command"""
        return self.prompt

    @export(read_only=True)
    def get_settings(self) -> dict:
        """How to reach the prompt: prompt, interrupt, prompt_timeout, init_commands, max_line"""
        return {"prompt": self.prompt, "interrupt": self.interrupt, "prompt_timeout": self.prompt_timeout,
                "init_commands": list(self.init_commands), "max_line": self.max_line}
