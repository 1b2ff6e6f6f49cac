"""Station simulator: spot-board firmware on pseudo terminals, an NFC badge over nfcpy's
udp driver, power/alarm inputs, a cuttable broker link, and a minimal cloud peer."""
