"""`python -m kickstand.cloud.commands`: print the command-signing public key document
(devices trust ``public_key``; the key is created in development)."""

import sys

from kickstand.cloud.commands.keys import main

if __name__ == "__main__":
    sys.exit(main())
