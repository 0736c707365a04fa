"""Delivery zone mapping: a postal code -> its carrier zone and remote-area flag.

Silver applies it when it standardizes customers and transactions (`transforms.standardize`); it is exposed
here, once, as a feature: `zip5` normalises the code and `with_delivery_zone` looks its 3-digit
prefix up in the zone chart (`silver.shipping_zones`).
"""

from transforms.standardize import with_delivery_zone, zip5

__all__ = ["with_delivery_zone", "zip5"]
