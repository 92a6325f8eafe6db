"""ThreatFox to Microsoft Sentinel sync: all logic of the Function app."""
