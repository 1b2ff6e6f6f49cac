"""Device firmware emulated at the wire (spot boards on ptys, NFC badges over nfcpy's udp
driver, vehicle peripherals), station and vehicle fleets, and the demo launcher.

``python -m kickstand.simulators station|fleet|vehicle …`` — see ``__main__``."""
