"""Colour tables for pictures written without a window: exact copies of pyqtgraph 0.14's
256-entry tables (``pg.colormap.get(name).getLookupTable(nPts=256, alpha=False)``; a test holds
them equal), so that the command line draws its maps without importing pyqtgraph, and with it Qt.
"""

from __future__ import annotations

import numpy as np

DIVERGING = "CET-D1"  # for differences: blue below zero, red above
SIGNED_COLOUR_MAP = (
    f"{DIVERGING} (diverging: blue below zero, near white at zero, red above; levels symmetric "
    f"around zero, -m to m, m the map's largest magnitude)"
)
"""How a card names the colour map of a signed method's map (:attr:`Method.signed`)."""

# each table: 256 RGB triples, as hexadecimal text
_TABLES = {
    "inferno": (
        "00000401000501010601010802010a02020c02020e03021004031204031405041706041907051b08051d0906"
        "1f0a07220b07240c08260d08290e092b10092d110a30120a32140b34150b37160b39180c3c190c3e1b0c411c"
        "0c431e0c451f0c48210c4a230c4c240c4f260c51280b53290b552b0b572d0b592f0a5b310a5c320a5e340a5f"
        "3609613809623909633b09643d09653e0966400a67420a68440a68450a69470b6a490b6a4a0c6b4c0c6b4d0d"
        "6c4f0d6c510e6c520e6d540f6d550f6d57106e59106e5a116e5c126e5d126e5f136e61136e62146e64156e65"
        "156e67166e69166e6a176e6c186e6d186e6f196e71196e721a6e741a6e751b6e771c6d781c6d7a1d6d7c1d6d"
        "7d1e6d7f1e6c801f6c82206c84206b85216b87216b88226a8a226a8c23698d23698f24699025689225689326"
        "679526679727669827669a28659b29649d29649f2a63a02a63a22b62a32c61a52c60a62d60a82e5fa92e5eab"
        "2f5ead305dae305cb0315bb1325ab3325ab43359b63458b73557b93556ba3655bc3754bd3853bf3952c03a51"
        "c13a50c33b4fc43c4ec63d4dc73e4cc83f4bca404acb4149cc4248ce4347cf4446d04545d24644d34743d448"
        "42d54a41d74b3fd84c3ed94d3dda4e3cdb503bdd513ade5238df5337e05536e15635e25734e35933e45a31e5"
        "5c30e65d2fe75e2ee8602de9612bea632aeb6429eb6628ec6726ed6925ee6a24ef6c23ef6e21f06f20f1711f"
        "f1731df2741cf3761bf37819f47918f57b17f57d15f67e14f68013f78212f78410f8850ff8870ef8890cf98b"
        "0bf98c0af98e09fa9008fa9207fa9407fb9606fb9706fb9906fb9b06fb9d07fc9f07fca108fca309fca50afc"
        "a60cfca80dfcaa0ffcac11fcae12fcb014fcb216fcb418fbb61afbb81dfbba1ffbbc21fbbe23fac026fac228"
        "fac42afac62df9c72ff9c932f9cb35f8cd37f8cf3af7d13df7d340f6d543f6d746f5d949f5db4cf4dd4ff4df"
        "53f4e156f3e35af3e55df2e661f2e865f2ea69f1ec6df1ed71f1ef75f1f179f2f27df2f482f3f586f3f68af4"
        "f88ef5f992f6fa96f8fb9af9fc9dfafda1fcffa4"
    ),
    "CET-D1": (
        "2151db2552db2a53db2e54dc3155dc3556dc3857dc3b58dc3e5add415bdd435cdd465ddd485ede4b5fde4d60"
        "de5061de5262de5464df5665df5866df5a67df5c68df5e6ae0606be0626ce0646de0666ee0686fe16970e16b"
        "72e16d73e16f74e17075e27276e27478e27579e2777ae2797be37a7ce37c7de37d7fe37f80e38181e38282e4"
        "8484e48585e48786e48887e48a88e58b8ae58d8be58e8ce5908ee6918fe69290e69491e69592e69794e69895"
        "e79a96e79b97e79c98e79e9ae79f9be7a09ce8a29ee8a39fe8a4a0e8a6a1e8a7a3e8a8a4e9aaa5e9aba7e9ac"
        "a8e9aea9e9afaae9b0aceab2adeab3aeeab4afeab6b1eab7b2eab8b3ebb9b5ebbbb6ebbcb7ebbdb8ebbebaeb"
        "c0bbebc1bcecc2bdecc3bfecc5c0ecc6c2ecc7c3ecc8c4eccac5edcbc7edccc8edcdc9edcfcbedd0ccedd1cd"
        "edd2cfeed3d0eed5d1eed6d3eed7d4eed8d5eedad6eedbd8eedcd9eedddbefdedcefe0ddefe1deefe2dfefe3"
        "e1efe4e2efe5e3efe6e4eee8e5eee9e6eeeae6edeae7edebe7ecece7ebede7eaeee7e9eee7e8efe7e7efe6e6"
        "f0e5e4f0e4e2f1e3e1f1e2dff1e1def1e0dcf1dedaf1ddd8f2dcd6f2dad4f2d8d2f2d7d0f2d5cff2d4cdf2d2"
        "caf2d1c9f2cfc7f1cec5f1ccc3f1cac1f1c9bff1c7bdf1c6bbf1c4b9f1c3b7f1c1b6f1c0b4f0beb2f0bdb0f0"
        "bbaef0b9acf0b8aaf0b6a8efb5a7efb3a4efb2a3efb0a1eeaf9feead9deeac9beeaa99eda897eda796eda594"
        "eda492eca290eca18eec9f8deb9e8beb9c89eb9a87ea9985ea9783ea9682e99480e9937ee9917ce88f7ae88e"
        "79e78c77e78b75e78973e68771e68670e5846ee5836ce4816ae48069e37e67e37c65e27b63e27962e17860e1"
        "765ee0745ce0735bdf7159df6f57de6e55de6c54dd6b52dd6950dc674fdb654ddb644bda6249da6048d95f46"
        "d85d44d85b43d75a41d7583fd6563dd5543cd5523ad45139d34f37d34d35d24b34d14932d14730d0452ecf44"
        "2dcf422bce3f29cd3d28cd3b26cc3924cb3722ca3521ca321fc9301dc82e1cc82b1ac72918c62616c52314c5"
        "2012c41c10c3180ec2140cc2100ac10908c00206"
    ),
}


def colour_table(name: str = "inferno") -> np.ndarray:
    """The (256, 3) uint8 table of ``name``: "inferno" or :data:`DIVERGING`."""
    try:
        text = _TABLES[name]
    except KeyError:
        raise ValueError(f"unknown colour table {name!r}; use {' or '.join(_TABLES)}") from None
    return np.frombuffer(bytes.fromhex(text), dtype=np.uint8).reshape(256, 3).copy()
