"""Adapters that read real chest X-ray datasets' label files (one module per dataset).

Each `parse_*(root, options) -> ParsedDataset` reads only CSV/TXT label files; `raddino.data.
datasets.index_dataset` then checks images, reads views/sizes from pixel-level DICOM tags, writes
masks and the dataset folder.
"""

from __future__ import annotations

from raddino.data.adapters.candid import parse_candid_ptx
from raddino.data.adapters.chexpert import parse_chexpert
from raddino.data.adapters.common import AdapterOptions, ParsedDataset
from raddino.data.adapters.mimic import parse_mimic_cxr
from raddino.data.adapters.nih import parse_nih_cxr14
from raddino.data.adapters.padchest import parse_padchest
from raddino.data.adapters.rsna import parse_rsna_pneumonia
from raddino.data.adapters.siim import parse_siim_acr
from raddino.data.adapters.vindr import parse_vindr_cxr

ADAPTERS = {
    "mimic-cxr": parse_mimic_cxr,
    "chexpert": parse_chexpert,
    "vindr-cxr": parse_vindr_cxr,
    "candid-ptx": parse_candid_ptx,
    "rsna-pneumonia": parse_rsna_pneumonia,
    "siim-acr": parse_siim_acr,
    "padchest": parse_padchest,
    "nih-cxr14": parse_nih_cxr14,
}

__all__ = ["ADAPTERS", "AdapterOptions", "ParsedDataset"]
