"""The microkernel: hook specifications, driver interfaces, plugin discovery."""
