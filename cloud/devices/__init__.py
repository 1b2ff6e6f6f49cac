"""The device registry for operators (issue 16): stations' mainboards and vehicles'
controllers as the cloud knows them, their boots, what they are attached to, the commands
an operator sends them and their history, and the riders' login devices (seed 002
"Get users using given device")."""
