"""Methods boilerplate generated from the run's settings, with references (CITATION.md/.bib).

The same text appears in every subject report's *Methods* section, so what a paper says
about the processing is exactly what ran.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from bids_brainage import __version__
from bids_brainage.compute.brainage_methods import model_methods
from bids_brainage.defaults import (
    DEFAULT_ATLAS,
    DEFAULT_BAND_PASS,
    DEFAULT_BIAS_CORRECTION,
    DEFAULT_CONNECTIVITY,
    DEFAULT_FD_THRESHOLD,
    DEFAULT_HARMONIZE,
    DEFAULT_MAX_SCRUBBED_FRACTION,
    DEFAULT_MIN_TIME,
    DEFAULT_N_FOLDS,
    DEFAULT_NUISANCE_REGRESSORS,
)
from bids_brainage.utils import atomic
from bids_brainage.workflows.anatomical import anat_methods
from bids_brainage.workflows.functional import func_methods

# key -> (plain-text reference, BibTeX entry)
REFERENCES: dict[str, tuple[str, str]] = {
    "saavae": (
        "Rehman AU, Rehman A, Usman M, Shahid A, Gho S-M, Lee A, Khan TM, Razzak I. Biological brain "
        "age estimation using sex-aware adversarial variational autoencoder with multimodal "
        "neuroimages. arXiv:2412.05632 (2024).",
        "@misc{saavae,\n  title = {Biological Brain Age Estimation using Sex-Aware Adversarial Variational "
        "Autoencoder with Multimodal Neuroimages},\n  author = {Rehman, Abd Ur and Rehman, Azka and Usman, "
        "Muhammad and Shahid, Abdullah and Gho, Sung-Min and Lee, Aleum and Khan, Tariq M. and Razzak, "
        "Imran},\n  year = {2024},\n  eprint = {2412.05632},\n  archivePrefix = {arXiv},\n"
        "  primaryClass = {cs.LG}\n}",
    ),
    "nipype": (
        "Gorgolewski K, Burns CD, Madison C, Clark D, Halchenko YO, Waskom ML, Ghosh SS. Nipype: a "
        "flexible, lightweight and extensible neuroimaging data processing framework in Python. "
        "Front Neuroinform. 2011;5:13. doi:10.3389/fninf.2011.00013",
        "@article{nipype,\n  title = {Nipype: a flexible, lightweight and extensible neuroimaging data "
        "processing framework in Python},\n  author = {Gorgolewski, Krzysztof and Burns, Christopher D. and "
        "Madison, Cindee and Clark, Dav and Halchenko, Yaroslav O. and Waskom, Michael L. and Ghosh, "
        "Satrajit S.},\n  journal = {Frontiers in Neuroinformatics},\n  volume = {5},\n  pages = {13},\n"
        "  year = {2011},\n  doi = {10.3389/fninf.2011.00013}\n}",
    ),
    "pybids": (
        "Yarkoni T, Markiewicz CJ, de la Vega A, et al. PyBIDS: Python tools for BIDS datasets. "
        "J Open Source Softw. 2019;4(40):1294. doi:10.21105/joss.01294",
        "@article{pybids,\n  title = {PyBIDS: Python tools for BIDS datasets},\n  author = {Yarkoni, Tal "
        "and Markiewicz, Christopher J. and de la Vega, Alejandro and others},\n  journal = {Journal of "
        "Open Source Software},\n  volume = {4},\n  number = {40},\n  pages = {1294},\n  year = {2019},\n"
        "  doi = {10.21105/joss.01294}\n}",
    ),
    "antsx": (
        "Tustison NJ, Cook PA, Holbrook AJ, et al. The ANTsX ecosystem for quantitative biological and "
        "medical imaging. Sci Rep. 2021;11:9068. doi:10.1038/s41598-021-87564-6",
        "@article{antsx,\n  title = {The {ANTsX} ecosystem for quantitative biological and medical "
        "imaging},\n  author = {Tustison, Nicholas J. and Cook, Philip A. and Holbrook, Andrew J. and "
        "others},\n  journal = {Scientific Reports},\n  volume = {11},\n  pages = {9068},\n  year = {2021},\n"
        "  doi = {10.1038/s41598-021-87564-6}\n}",
    ),
    "n4": (
        "Tustison NJ, Avants BB, Cook PA, Zheng Y, Egan A, Yushkevich PA, Gee JC. N4ITK: improved N3 "
        "bias correction. IEEE Trans Med Imaging. 2010;29(6):1310-1320. doi:10.1109/TMI.2010.2046908",
        "@article{n4,\n  title = {{N4ITK}: improved {N3} bias correction},\n  author = {Tustison, Nicholas J. "
        "and Avants, Brian B. and Cook, Philip A. and Zheng, Yuanjie and Egan, Alexander and Yushkevich, "
        "Paul A. and Gee, James C.},\n  journal = {IEEE Transactions on Medical Imaging},\n  volume = {29},\n"
        "  number = {6},\n  pages = {1310--1320},\n  year = {2010},\n  doi = {10.1109/TMI.2010.2046908}\n}",
    ),
    "syn": (
        "Avants BB, Epstein CL, Grossman M, Gee JC. Symmetric diffeomorphic image registration with "
        "cross-correlation: evaluating automated labeling of elderly and neurodegenerative brain. "
        "Med Image Anal. 2008;12(1):26-41. doi:10.1016/j.media.2007.06.004",
        "@article{syn,\n  title = {Symmetric diffeomorphic image registration with cross-correlation: "
        "evaluating automated labeling of elderly and neurodegenerative brain},\n  author = {Avants, "
        "Brian B. and Epstein, Charles L. and Grossman, Murray and Gee, James C.},\n  journal = {Medical "
        "Image Analysis},\n  volume = {12},\n  number = {1},\n  pages = {26--41},\n  year = {2008},\n"
        "  doi = {10.1016/j.media.2007.06.004}\n}",
    ),
    "atropos": (
        "Avants BB, Tustison NJ, Wu J, Cook PA, Gee JC. An open source multivariate framework for "
        "n-tissue segmentation with evaluation on public data. Neuroinformatics. 2011;9(4):381-400. "
        "doi:10.1007/s12021-011-9109-y",
        "@article{atropos,\n  title = {An open source multivariate framework for n-tissue segmentation "
        "with evaluation on public data},\n  author = {Avants, Brian B. and Tustison, Nicholas J. and Wu, "
        "Jue and Cook, Philip A. and Gee, James C.},\n  journal = {Neuroinformatics},\n  volume = {9},\n"
        "  number = {4},\n  pages = {381--400},\n  year = {2011},\n  doi = {10.1007/s12021-011-9109-y}\n}",
    ),
    "kellykapowski": (
        "Das SR, Avants BB, Grossman M, Gee JC. Registration based cortical thickness measurement. "
        "NeuroImage. 2009;45(3):867-879. doi:10.1016/j.neuroimage.2008.12.016",
        "@article{kellykapowski,\n  title = {Registration based cortical thickness measurement},\n"
        "  author = {Das, Sandhitsu R. and Avants, Brian B. and Grossman, Murray and Gee, James C.},\n"
        "  journal = {NeuroImage},\n  volume = {45},\n  number = {3},\n  pages = {867--879},\n  year = {2009},\n"
        "  doi = {10.1016/j.neuroimage.2008.12.016}\n}",
    ),
    "nilearn": (
        "Abraham A, Pedregosa F, Eickenberg M, et al. Machine learning for neuroimaging with "
        "scikit-learn. Front Neuroinform. 2014;8:14. doi:10.3389/fninf.2014.00014",
        "@article{nilearn,\n  title = {Machine learning for neuroimaging with scikit-learn},\n  author = "
        "{Abraham, Alexandre and Pedregosa, Fabian and Eickenberg, Michael and others},\n  journal = "
        "{Frontiers in Neuroinformatics},\n  volume = {8},\n  pages = {14},\n  year = {2014},\n"
        "  doi = {10.3389/fninf.2014.00014}\n}",
    ),
    "pytorch": (
        "Paszke A, Gross S, Massa F, et al. PyTorch: an imperative style, high-performance deep learning "
        "library. Advances in Neural Information Processing Systems 32 (NeurIPS 2019):8024-8035.",
        "@inproceedings{pytorch,\n  title = {{PyTorch}: An Imperative Style, High-Performance Deep Learning "
        "Library},\n  author = {Paszke, Adam and Gross, Sam and Massa, Francisco and others},\n  booktitle = "
        "{Advances in Neural Information Processing Systems 32},\n  pages = {8024--8035},\n  year = {2019}\n}",
    ),
    "fonov2009": (
        "Fonov VS, Evans AC, McKinstry RC, Almli CR, Collins DL. Unbiased nonlinear average "
        "age-appropriate brain templates from birth to adulthood. NeuroImage. 2009;47(Suppl 1):S102. "
        "doi:10.1016/S1053-8119(09)70884-5",
        "@article{fonov2009,\n  title = {Unbiased nonlinear average age-appropriate brain templates from "
        "birth to adulthood},\n  author = {Fonov, Vladimir S. and Evans, Alan C. and McKinstry, Robert C. "
        "and Almli, C. Robert and Collins, D. Louis},\n  journal = {NeuroImage},\n  volume = {47},\n"
        "  pages = {S102},\n  year = {2009},\n  doi = {10.1016/S1053-8119(09)70884-5}\n}",
    ),
    "fonov2011": (
        "Fonov V, Evans AC, Botteron K, Almli CR, McKinstry RC, Collins DL. Unbiased average "
        "age-appropriate atlases for pediatric studies. NeuroImage. 2011;54(1):313-327. "
        "doi:10.1016/j.neuroimage.2010.07.033",
        "@article{fonov2011,\n  title = {Unbiased average age-appropriate atlases for pediatric studies},\n"
        "  author = {Fonov, Vladimir and Evans, Alan C. and Botteron, Kelly and Almli, C. Robert and "
        "McKinstry, Robert C. and Collins, D. Louis},\n  journal = {NeuroImage},\n  volume = {54},\n"
        "  number = {1},\n  pages = {313--327},\n  year = {2011},\n  doi = {10.1016/j.neuroimage.2010.07.033}\n}",
    ),
    "desikan2006": (
        "Desikan RS, Ségonne F, Fischl B, et al. An automated labeling system for subdividing the human "
        "cerebral cortex on MRI scans into gyral based regions of interest. NeuroImage. "
        "2006;31(3):968-980. doi:10.1016/j.neuroimage.2006.01.021",
        "@article{desikan2006,\n  title = {An automated labeling system for subdividing the human cerebral "
        "cortex on {MRI} scans into gyral based regions of interest},\n  author = {Desikan, Rahul S. and "
        "S{\\'e}gonne, Florent and Fischl, Bruce and others},\n  journal = {NeuroImage},\n  volume = {31},\n"
        "  number = {3},\n  pages = {968--980},\n  year = {2006},\n  doi = {10.1016/j.neuroimage.2006.01.021}\n}",
    ),
    "seitzman2018": (
        "Seitzman BA, Gratton C, Marek S, et al. A set of functionally-defined brain regions with "
        "improved representation of the subcortex and cerebellum. NeuroImage. 2020;206:116290 "
        "(bioRxiv 2018). doi:10.1016/j.neuroimage.2019.116290",
        "@article{seitzman2018,\n  title = {A set of functionally-defined brain regions with improved "
        "representation of the subcortex and cerebellum},\n  author = {Seitzman, Benjamin A. and Gratton, "
        "Caterina and Marek, Scott and others},\n  journal = {NeuroImage},\n  volume = {206},\n"
        "  pages = {116290},\n  year = {2020},\n  doi = {10.1016/j.neuroimage.2019.116290}\n}",
    ),
    "power2011": (
        "Power JD, Cohen AL, Nelson SM, et al. Functional network organization of the human brain. "
        "Neuron. 2011;72(4):665-678. doi:10.1016/j.neuron.2011.09.006",
        "@article{power2011,\n  title = {Functional network organization of the human brain},\n  author = "
        "{Power, Jonathan D. and Cohen, Alexander L. and Nelson, Steven M. and others},\n  journal = "
        "{Neuron},\n  volume = {72},\n  number = {4},\n  pages = {665--678},\n  year = {2011},\n"
        "  doi = {10.1016/j.neuron.2011.09.006}\n}",
    ),
    "power2012": (
        "Power JD, Barnes KA, Snyder AZ, Schlaggar BL, Petersen SE. Spurious but systematic correlations "
        "in functional connectivity MRI networks arise from subject motion. NeuroImage. "
        "2012;59(3):2142-2154. doi:10.1016/j.neuroimage.2011.10.018",
        "@article{power2012,\n  title = {Spurious but systematic correlations in functional connectivity "
        "{MRI} networks arise from subject motion},\n  author = {Power, Jonathan D. and Barnes, Kelly A. and "
        "Snyder, Abraham Z. and Schlaggar, Bradley L. and Petersen, Steven E.},\n  journal = {NeuroImage},\n"
        "  volume = {59},\n  number = {3},\n  pages = {2142--2154},\n  year = {2012},\n"
        "  doi = {10.1016/j.neuroimage.2011.10.018}\n}",
    ),
    "power2014": (
        "Power JD, Mitra A, Laumann TO, Snyder AZ, Schlaggar BL, Petersen SE. Methods to detect, "
        "characterize, and remove motion artifact in resting state fMRI. NeuroImage. 2014;84:320-341. "
        "doi:10.1016/j.neuroimage.2013.08.048",
        "@article{power2014,\n  title = {Methods to detect, characterize, and remove motion artifact in "
        "resting state {fMRI}},\n  author = {Power, Jonathan D. and Mitra, Anish and Laumann, Timothy O. and "
        "Snyder, Abraham Z. and Schlaggar, Bradley L. and Petersen, Steven E.},\n  journal = {NeuroImage},\n"
        "  volume = {84},\n  pages = {320--341},\n  year = {2014},\n  doi = {10.1016/j.neuroimage.2013.08.048}\n}",
    ),
    "friston1996": (
        "Friston KJ, Williams S, Howard R, Frackowiak RS, Turner R. Movement-related effects in fMRI "
        "time-series. Magn Reson Med. 1996;35(3):346-355. doi:10.1002/mrm.1910350312",
        "@article{friston1996,\n  title = {Movement-related effects in {fMRI} time-series},\n  author = "
        "{Friston, Karl J. and Williams, Steven and Howard, Robert and Frackowiak, Richard S. J. and "
        "Turner, Robert},\n  journal = {Magnetic Resonance in Medicine},\n  volume = {35},\n  number = {3},\n"
        "  pages = {346--355},\n  year = {1996},\n  doi = {10.1002/mrm.1910350312}\n}",
    ),
    "satterthwaite2013": (
        "Satterthwaite TD, Elliott MA, Gerraty RT, et al. An improved framework for confound regression "
        "and filtering for control of motion artifact in the preprocessing of resting-state functional "
        "connectivity data. NeuroImage. 2013;64:240-256. doi:10.1016/j.neuroimage.2012.08.052",
        "@article{satterthwaite2013,\n  title = {An improved framework for confound regression and filtering "
        "for control of motion artifact in the preprocessing of resting-state functional connectivity "
        "data},\n  author = {Satterthwaite, Theodore D. and Elliott, Mark A. and Gerraty, Raphael T. and "
        "others},\n  journal = {NeuroImage},\n  volume = {64},\n  pages = {240--256},\n  year = {2013},\n"
        "  doi = {10.1016/j.neuroimage.2012.08.052}\n}",
    ),
    "dosenbach2010": (
        "Dosenbach NUF, Nardos B, Cohen AL, et al. Prediction of individual brain maturity using fMRI. "
        "Science. 2010;329(5997):1358-1361. doi:10.1126/science.1194144",
        "@article{dosenbach2010,\n  title = {Prediction of individual brain maturity using {fMRI}},\n"
        "  author = {Dosenbach, Nico U. F. and Nardos, Binyam and Cohen, Alexander L. and others},\n"
        "  journal = {Science},\n  volume = {329},\n  number = {5997},\n  pages = {1358--1361},\n"
        "  year = {2010},\n  doi = {10.1126/science.1194144}\n}",
    ),
    "ledoit2004": (
        "Ledoit O, Wolf M. A well-conditioned estimator for large-dimensional covariance matrices. "
        "J Multivar Anal. 2004;88(2):365-411. doi:10.1016/S0047-259X(03)00096-4",
        "@article{ledoit2004,\n  title = {A well-conditioned estimator for large-dimensional covariance "
        "matrices},\n  author = {Ledoit, Olivier and Wolf, Michael},\n  journal = {Journal of Multivariate "
        "Analysis},\n  volume = {88},\n  number = {2},\n  pages = {365--411},\n  year = {2004},\n"
        "  doi = {10.1016/S0047-259X(03)00096-4}\n}",
    ),
    "smith2019": (
        "Smith SM, Vidaurre D, Alfaro-Almagro F, Nichols TE, Miller KL. Estimation of brain age delta "
        "from brain imaging. NeuroImage. 2019;200:528-539. doi:10.1016/j.neuroimage.2019.06.017",
        "@article{smith2019,\n  title = {Estimation of brain age delta from brain imaging},\n  author = "
        "{Smith, Stephen M. and Vidaurre, Diego and Alfaro-Almagro, Fidel and Nichols, Thomas E. and "
        "Miller, Karla L.},\n  journal = {NeuroImage},\n  volume = {200},\n  pages = {528--539},\n"
        "  year = {2019},\n  doi = {10.1016/j.neuroimage.2019.06.017}\n}",
    ),
    "papadopoulos2011": (
        "Papadopoulos H, Vovk V, Gammerman A. Regression conformal prediction with nearest neighbours. "
        "J Artif Intell Res. 2011;40:815-840. doi:10.1613/jair.3198",
        "@article{papadopoulos2011,\n  title = {Regression conformal prediction with nearest neighbours},\n"
        "  author = {Papadopoulos, Harris and Vovk, Vladimir and Gammerman, Alex},\n  journal = {Journal of "
        "Artificial Intelligence Research},\n  volume = {40},\n  pages = {815--840},\n  year = {2011},\n"
        "  doi = {10.1613/jair.3198}\n}",
    ),
    "bostrom2022": (
        "Boström H. crepes: a Python package for generating conformal regressors and predictive systems. "
        "Proc Mach Learn Res. 2022;179:24-41 (COPA 2022).",
        "@inproceedings{bostrom2022,\n  title = {crepes: a Python Package for Generating Conformal "
        'Regressors and Predictive Systems},\n  author = {Bostr{\\"o}m, Henrik},\n  booktitle = {Proceedings '
        "of the Eleventh Symposium on Conformal and Probabilistic Prediction with Applications},\n"
        "  series = {PMLR},\n  volume = {179},\n  pages = {24--41},\n  year = {2022}\n}",
    ),
    "johnson2007": (
        "Johnson WE, Li C, Rabinovic A. Adjusting batch effects in microarray expression data using "
        "empirical Bayes methods. Biostatistics. 2007;8(1):118-127. doi:10.1093/biostatistics/kxj037",
        "@article{johnson2007,\n  title = {Adjusting batch effects in microarray expression data using "
        "empirical {Bayes} methods},\n  author = {Johnson, W. Evan and Li, Cheng and Rabinovic, Ariel},\n"
        "  journal = {Biostatistics},\n  volume = {8},\n  number = {1},\n  pages = {118--127},\n"
        "  year = {2007},\n  doi = {10.1093/biostatistics/kxj037}\n}",
    ),
    "pomponio2020": (
        "Pomponio R, Erus G, Habes M, et al. Harmonization of large MRI datasets for the analysis of brain "
        "imaging patterns throughout the lifespan. NeuroImage. 2020;208:116450. "
        "doi:10.1016/j.neuroimage.2019.116450",
        "@article{pomponio2020,\n  title = {Harmonization of large {MRI} datasets for the analysis of brain "
        "imaging patterns throughout the lifespan},\n  author = {Pomponio, Raymond and Erus, Guray and "
        "Habes, Mohamad and others},\n  journal = {NeuroImage},\n  volume = {208},\n  pages = {116450},\n"
        "  year = {2020},\n  doi = {10.1016/j.neuroimage.2019.116450}\n}",
    ),
    "beheshti2019": (
        "Beheshti I, Nugent S, Potvin O, Duchesne S. Bias-adjustment in neuroimaging-based brain age "
        "frameworks: a robust scheme. NeuroImage Clin. 2019;24:102063. doi:10.1016/j.nicl.2019.102063",
        "@article{beheshti2019,\n  title = {Bias-adjustment in neuroimaging-based brain age frameworks: A "
        "robust scheme},\n  author = {Beheshti, Iman and Nugent, Scott and Potvin, Olivier and Duchesne, "
        "Simon},\n  journal = {NeuroImage: Clinical},\n  volume = {24},\n  pages = {102063},\n  year = {2019},\n"
        "  doi = {10.1016/j.nicl.2019.102063}\n}",
    ),
    "lei2018": (
        "Lei J, G'Sell M, Rinaldo A, Tibshirani RJ, Wasserman L. Distribution-free predictive inference "
        "for regression. J Am Stat Assoc. 2018;113(523):1094-1111. doi:10.1080/01621459.2017.1307116",
        "@article{lei2018,\n  title = {Distribution-free predictive inference for regression},\n  author = "
        "{Lei, Jing and G'Sell, Max and Rinaldo, Alessandro and Tibshirani, Ryan J. and Wasserman, Larry},\n"
        "  journal = {Journal of the American Statistical Association},\n  volume = {113},\n  number = {523},\n"
        "  pages = {1094--1111},\n  year = {2018},\n  doi = {10.1080/01621459.2017.1307116}\n}",
    ),
    "vovk2005": (
        "Vovk V, Gammerman A, Shafer G. Algorithmic Learning in a Random World. Springer; 2005. "
        "doi:10.1007/b106715",
        "@book{vovk2005,\n  title = {Algorithmic Learning in a Random World},\n  author = {Vovk, Vladimir and "
        "Gammerman, Alex and Shafer, Glenn},\n  publisher = {Springer},\n  year = {2005},\n"
        "  doi = {10.1007/b106715}\n}",
    ),
}


def _get(settings: Any, key: str, default: Any = None) -> Any:
    if isinstance(settings, dict):
        value = settings.get(key, default)
    else:
        value = getattr(settings, key, default)
    return default if value is None else value


def _functional_sidecars(output_dir: str | Path | None, limit: int = 50) -> list[dict[str, Any]]:
    """The functional features sidecars a run wrote (at most ``limit``), parsed."""
    if output_dir is None:
        return []
    root = Path(output_dir)
    candidates = sorted(root.glob("sub-*/func/*desc-functional_features.json"))
    candidates += sorted(root.glob("sub-*/ses-*/func/*desc-functional_features.json"))
    sidecars = []
    for sidecar in candidates[:limit]:
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict):
            sidecars.append(meta)
    return sidecars


def band_pass_from_outputs(
    output_dir: str | Path | None, sidecars: list[dict[str, Any]] | None = None
) -> tuple[float, float] | None:
    """Band-pass edges (Hz) recorded in a functional sidecar under ``output_dir``, if any.

    Looks for ``HighPass``/``LowPass`` (at any depth, e.g. ``Denoising.HighPass``) or a
    two-element ``BandPass`` list in the functional features sidecars (``sidecars``, when
    already read).
    """
    for meta in (_functional_sidecars(output_dir) if sidecars is None else sidecars)[:5]:
        found = _find_band(meta)
        if found:
            return found
    return None


def recorded_values(sidecars: list[dict[str, Any]], getter: Any) -> list[Any]:
    """Distinct values of ``getter(sidecar)`` over functional sidecars (None skipped), sorted."""
    values = set()
    for meta in sidecars:
        try:
            value = getter(meta)
        except (KeyError, TypeError, AttributeError):
            continue
        if value is not None:
            values.add(value)
    return sorted(values)


def _find_band(meta: dict[str, Any]) -> tuple[float, float] | None:
    keys = {str(k).lower(): v for k, v in meta.items()}
    for key in ("bandpass", "band_pass", "bandpassfilter"):
        value = keys.get(key)
        if isinstance(value, list | tuple) and len(value) == 2:
            return float(value[0]), float(value[1])
    if isinstance(keys.get("highpass"), int | float) and isinstance(keys.get("lowpass"), int | float):
        return float(keys["highpass"]), float(keys["lowpass"])
    for value in meta.values():
        if isinstance(value, dict):
            found = _find_band(value)
            if found:
                return found
    return None


def _group_settings(settings: Any) -> dict[str, Any]:
    """Settings of the newest group-level run (model training happens there), or ``{}``."""
    output_dir = _get(settings, "output_dir")
    if output_dir is None or _get(settings, "analysis_level") == "group":
        return {}
    files = sorted((Path(output_dir) / "logs").glob("config_group_*.json"))
    try:
        data = json.loads(files[-1].read_text(encoding="utf-8")) if files else {}
    except (OSError, ValueError):
        data = {}
    try:
        metrics = json.loads((Path(output_dir) / "group" / "metrics.json").read_text(encoding="utf-8"))
        if isinstance(metrics.get("n_folds"), int):
            data["n_folds"] = metrics["n_folds"]
    except (OSError, ValueError, AttributeError):
        pass
    return data if isinstance(data, dict) else {}


def _model_record(output_dir: Any) -> dict[str, Any]:
    """``brainage.json`` of the fitted model under ``output_dir``, or ``{}`` before a group run."""
    if output_dir is None:
        return {}
    try:
        meta = json.loads((Path(output_dir) / "brainage.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _recorded_device(meta: dict[str, Any]) -> str | None:
    for key in ("Device", "device"):
        if isinstance(meta.get(key), str):
            return meta[key]
    generated = meta.get("GeneratedBy") or {}
    if isinstance(generated, dict) and isinstance(generated.get("Device"), str):
        return generated["Device"]
    return None


def _cited(text: str) -> list[str]:
    """Reference keys cited in ``text`` (``[key; key]``), in order of first citation."""
    keys: list[str] = []
    for match in re.finditer(r"\[([a-z0-9]+(?:; [a-z0-9]+)*)\]", text):
        for key in match.group(1).split("; "):
            if key in REFERENCES and key not in keys:
                keys.append(key)
    return keys


def methods_paragraphs(settings: Any) -> list[tuple[str, str, list[str]]]:
    """The methods text as ``(heading, paragraph, reference keys)`` triples.

    Each paragraph is the text written beside the step's builder (``anat_methods`` and
    ``func_methods``, the ``__desc__`` of :func:`~bids_brainage.workflows.anatomical.init_anat_wf`
    and :func:`~bids_brainage.workflows.functional.init_func_wf`; ``model_methods`` of the group
    step), filled in with this run's settings and the values its outputs recorded.

    Parameters
    ----------
    settings : Config or dict
        A :class:`~bids_brainage.config.Config` or the JSON dict it was saved as.
    """
    output_dir = _get(settings, "output_dir")
    sidecars = _functional_sidecars(output_dir)  # read once: band-pass, dummy scans, sphere radius
    anat = anat_methods(
        sloppy=bool(_get(settings, "sloppy", False)),
        thickness=bool(_get(settings, "thickness", False)),
        user_atlas=bool(_get(settings, "anat_atlas")),
    )
    # As init_single_subject_wf passes them: a user atlas (--anat-atlas) replaces --atlas.
    atlas = "custom" if _get(settings, "anat_atlas") else str(_get(settings, "atlas", DEFAULT_ATLAS))
    dummy = _get(settings, "dummy_scans")
    given_dummy = None if dummy in (None, "", "None") else int(dummy)
    derivatives = _get(settings, "derivatives", {})
    sphere = _get(settings, "sphere_radius")
    min_time, min_volumes = _minimum_setting(settings, sidecars)
    func = func_methods(
        atlas=atlas,
        connectivity=str(_get(settings, "connectivity", DEFAULT_CONNECTIVITY)),
        fd_threshold=float(_get(settings, "fd_threshold", DEFAULT_FD_THRESHOLD)),
        max_scrubbed_fraction=float(_get(settings, "max_scrubbed_fraction", DEFAULT_MAX_SCRUBBED_FRACTION)),
        min_time=min_time,
        min_volumes=min_volumes,
        dummy_scans=given_dummy,
        nuisance_regressors=_nuisance_setting(settings, sidecars),
        band_pass=band_pass_from_outputs(output_dir, sidecars) or _band_pass_setting(settings),
        sphere_radius=float(sphere) if sphere not in (None, "", "None") else None,
        fmriprep=isinstance(derivatives, dict) and bool(derivatives.get("fmriprep")),
        dummy_counts=recorded_values(sidecars, lambda m: int(m["QC"]["n_dummy_scans"])),
        sphere_radii=recorded_values(sidecars, lambda m: float(m["SphereRadius"])),
    )
    group = _group_settings(settings)
    # --anat-only at the participant level (no BOLD processed) or the group level (model on sMRI).
    anat_only_model = bool(_get(settings, "anat_only", False) or group.get("anat_only"))
    record = _model_record(output_dir)
    network = record.get("Model")
    model = model_methods(
        n_folds=int(group.get("n_folds") or _get(settings, "n_folds", DEFAULT_N_FOLDS)),
        harmonize=str(group.get("harmonize") or _get(settings, "harmonize", DEFAULT_HARMONIZE)),
        bias_correction=str(
            group.get("bias_correction") or _get(settings, "bias_correction", DEFAULT_BIAS_CORRECTION)
        ),
        device=_recorded_device(record) or str(group.get("device") or _get(settings, "device", "auto")),
        network=network if isinstance(network, str) else None,
    )
    if anat_only_model:
        model += " Only the structural features were used (`--anat-only`)."
    software = (
        f"Processing was performed with bids_brainage {__version__}, built on nipype [nipype] and "
        f"pybids [pybids]."
    )
    return [
        (heading, text, _cited(text))
        for heading, text in (
            ("Anatomical data", anat),
            ("Functional data", func),
            ("Brain-age model", model),
            ("Software", software),
        )
        if not (heading == "Functional data" and _get(settings, "anat_only", False))
    ]


def _recorded(sidecars: list[dict[str, Any]], key: str) -> Any:
    """The value every functional sidecar records under ``key`` (None when absent or mixed)."""
    values = recorded_values(sidecars, lambda m: m[key])
    return values[0] if len(values) == 1 else None


def _nuisance_setting(settings: Any, sidecars: list[dict[str, Any]] | None = None) -> str:
    """``--nuisance-regressors`` as the participant level recorded it in the sidecars (the group
    level may be run without it), else of the settings; settings saved before it existed had
    ``global_signal``."""
    strategy = _recorded(sidecars or [], "NuisanceRegressors") or _get(settings, "nuisance_regressors")
    if isinstance(strategy, str) and strategy:
        return strategy
    return "27P" if _get(settings, "global_signal", False) else DEFAULT_NUISANCE_REGRESSORS


def _minimum_setting(settings: Any, sidecars: list[dict[str, Any]]) -> tuple[float, int | None]:
    """``--min-time`` (s) and the deprecated ``--min-volumes`` (None unless given), as recorded
    in the functional sidecars when they agree, else from the settings."""
    recorded_time = _recorded(sidecars, "MinimumRetainedTime")
    if recorded_time is not None:
        return float(recorded_time), None
    if sidecars and all("MinimumRetainedVolumes" in m for m in sidecars):
        recorded_volumes = _recorded(sidecars, "MinimumRetainedVolumes")
        if recorded_volumes is not None:
            return DEFAULT_MIN_TIME, int(recorded_volumes)
    volumes = _get(settings, "min_volumes")
    given = int(volumes) if volumes not in (None, "", "None") else None
    return float(_get(settings, "min_time", DEFAULT_MIN_TIME)), given


def _band_pass_setting(settings: Any) -> tuple[float, float] | None:
    """The band-pass edges a run was given (None: ``--disable-bandpass-filter``)."""
    if _get(settings, "disable_bandpass_filter", False):
        return None
    low = float(_get(settings, "lower_bpf", DEFAULT_BAND_PASS[0]))
    high = float(_get(settings, "upper_bpf", DEFAULT_BAND_PASS[1]))
    return None if low <= 0 and high <= 0 else (low, high)


def cited_keys(paragraphs: list[tuple[str, str, list[str]]]) -> list[str]:
    """Reference keys in order of first citation."""
    keys: list[str] = []
    for _, _, refs in paragraphs:
        for key in refs:
            if key in REFERENCES and key not in keys:
                keys.append(key)
    return keys


def methods_markdown(settings: Any) -> str:
    """The methods boilerplate and its reference list as Markdown."""
    paragraphs = methods_paragraphs(settings)
    lines = [
        "# Methods",
        "",
        "Text generated by bids_brainage from the settings of this run; it may be copied into a "
        "manuscript unchanged (CC0). Citation keys refer to `CITATION.bib`.",
        "",
    ]
    for heading, text, _ in paragraphs:
        lines += [f"## {heading}", "", text, ""]
    lines += ["## References", ""]
    for key in cited_keys(paragraphs):
        lines.append(f"- [{key}] {REFERENCES[key][0]}")
    return "\n".join(lines) + "\n"


def bibtex(settings: Any) -> str:
    """BibTeX entries of every reference the methods text cites."""
    keys = cited_keys(methods_paragraphs(settings))
    return "\n\n".join(REFERENCES[key][1] for key in keys) + "\n"


def linkify(text: str) -> list[tuple[str, list[str]]]:
    """Split text at ``[key; key]`` citations: ``[(text_before, [keys]), ...]`` for HTML rendering."""
    parts: list[tuple[str, list[str]]] = []
    position = 0
    for match in re.finditer(r"\[([a-z0-9]+(?:; [a-z0-9]+)*)\]", text):
        keys = match.group(1).split("; ")
        if not all(k in REFERENCES for k in keys):
            continue
        parts.append((text[position : match.start()], keys))
        position = match.end()
    parts.append((text[position:], []))
    return parts


def write_citation(config: Any) -> tuple[Path, Path]:
    """Write ``OUTPUT_DIR/logs/CITATION.md`` and ``CITATION.bib`` (atomically).

    Parameters
    ----------
    config : Config or dict
        Run settings (``output_dir`` is required).

    Returns
    -------
    (Path, Path)
        The Markdown and BibTeX files.
    """
    logs = Path(_get(config, "output_dir")) / "logs"
    md = atomic.write_text(logs / "CITATION.md", methods_markdown(config))
    bib = atomic.write_text(logs / "CITATION.bib", bibtex(config))
    return md, bib
