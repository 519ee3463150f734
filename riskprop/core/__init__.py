"""Pure maths and data: no I/O beyond reading input files, no asyncio, no logging set-up."""
