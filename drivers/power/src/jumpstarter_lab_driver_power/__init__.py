"""Power: switch a board on and off, and read what it draws."""
