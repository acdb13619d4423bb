# Picket demo known-good files (ClamAV .fp: HASH:SIZE:NAME). An entry here
# overrides local detections of the same file: demo-cleared.txt passes.
7896ab6ae2d660bbaf309c1ee7a9525b8b4041ad98ba49eb658b9c15e2aa547a:71:Picket.Demo.KnownGood
