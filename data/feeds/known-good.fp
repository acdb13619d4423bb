# Known-good files (ClamAV .fp): an empty file's SHA-256 and MD5.
e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855:0:Picket.Known-Good.Empty
d41d8cd98f00b204e9800998ecf8427e:0:Picket.Known-Good.Empty
