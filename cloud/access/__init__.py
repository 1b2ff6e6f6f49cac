"""Access control as seed 002 shapes it: permissions (the seed's enum, per organizational
unit, read or write), roles (named sets of permissions), organizational units (the networks
a grant covers), organizations, blocked users and the dashboard's access log.

``grants`` parses a user's permission entries strictly; ``models`` holds the tables;
``service`` the rules (who may grant what); ``repository`` the SQL.
"""
