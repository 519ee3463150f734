"""Drivers that run protocol sessions over transports."""
