"""Image signatures: what containers-policy.json's signedBy and sigstoreSigned demand.

The parsing and matching rules (payloads, signed identities, Rekor SETs,
registries.d) are sans-IO and tested on bytes; the I/O (GnuPG, registries,
lookaside stores) lives in ``gpg`` and ``sources``; ``verifier`` ties them to a pull.
"""
