"""Methods boilerplate: a paragraph describing exactly what was run, with versions and references.

Written from the run's own parameter objects (:class:`bids_app.config.RunConfig`), like fMRIPrep's
``CITATION.md``, and rendered to a self-contained ``CITATION.html`` next to it.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

from bids_app.config import RunConfig
from bids_app.reports import render_page
from workflows.params import GroupParams
from workflows.utils.io import atomic_write_text

REFERENCES = {
    "parkes2018": "Parkes L, Fulcher B, Yücel M, Fornito A. An evaluation of the efficacy, reliability, and "
    "sensitivity of motion correction strategies for resting-state functional MRI. NeuroImage 171, 415-436 "
    "(2018). doi:10.1016/j.neuroimage.2017.12.073",
    "siegel2016": "Siegel JS, Snyder AZ, Ramsey L, Shulman GL, Corbetta M. The effects of hemodynamic lag on "
    "functional connectivity and behavior after stroke. J Cereb Blood Flow Metab 36, 2162-2176 (2016). "
    "doi:10.1177/0271678X15614846",
    "fmriprep": "Esteban O, Markiewicz CJ, Blair RW, et al. fMRIPrep: a robust preprocessing pipeline for "
    "functional MRI. Nature Methods 16, 111-116 (2019). doi:10.1038/s41592-018-0235-4",
    "nipype": "Gorgolewski K, Burns CD, Madison C, et al. Nipype: a flexible, lightweight and extensible "
    "neuroimaging data processing framework in Python. Front Neuroinform 5:13 (2011). "
    "doi:10.3389/fninf.2011.00013",
    "nilearn": "Abraham A, Pedregosa F, Eickenberg M, et al. Machine learning for neuroimaging with "
    "scikit-learn. Front Neuroinform 8:14 (2014). doi:10.3389/fninf.2014.00014 (nilearn)",
    "pytorch": "Paszke A, Gross S, Massa F, et al. PyTorch: an imperative style, high-performance deep "
    "learning library. Advances in Neural Information Processing Systems 32 (2019)",
    "haufe2014": "Haufe S, Meinecke F, Görgen K, Dähne S, Haynes JD, Blankertz B, Bießmann F. On the "
    "interpretation of weight vectors of linear models in multivariate neuroimaging. NeuroImage 87, "
    "96-110 (2014). doi:10.1016/j.neuroimage.2013.10.067",
    "hcpex": "Huang CC, Rolls ET, Feng J, Lin CP. An extended Human Connectome Project multimodal "
    "parcellation atlas of the human cortex and subcortical areas. Brain Struct Funct 227, "
    "763-778 (2022). doi:10.1007/s00429-021-02421-6 (HCPex atlas)",
    "carter2010": "Carter AR, Astafiev SV, Lang CE, et al. Resting interhemispheric functional magnetic "
    "resonance imaging connectivity predicts performance after stroke. Ann Neurol 67, 365-375 (2010). "
    "doi:10.1002/ana.21905",
    "park2011": "Park CH, Chang WH, Ohn SH, et al. Longitudinal changes of resting-state functional "
    "connectivity during motor recovery after stroke. Stroke 42, 1357-1362 (2011). "
    "doi:10.1161/STROKEAHA.110.596155",
    "grefkes2011": "Grefkes C, Fink GR. Reorganization of cerebral networks after stroke: new insights from "
    "neuroimaging with connectivity approaches. Brain 134, 1264-1276 (2011). doi:10.1093/brain/awr033",
    "aal": "Tzourio-Mazoyer N, Landeau B, Papathanassiou D, et al. Automated anatomical labeling of "
    "activations in SPM using a macroscopic anatomical parcellation of the MNI MRI single-subject "
    "brain. NeuroImage 15, 273-289 (2002). doi:10.1006/nimg.2001.0978 (AAL atlas)",
    "gao2025": "Gao et al. Dynamic functional connectivity of the ipsilesional primary motor cortex and "
    "deep learning classification of upper-limb motor impairment after stroke. Frontiers in "
    "Neurology 16:1666991 (2025). doi:10.3389/fneur.2025.1666991",
    "allen2014": "Allen EA, Damaraju E, Plis SM, Erhardt EB, Eichele T, Calhoun VD. Tracking whole-brain "
    "connectivity dynamics in the resting state. Cerebral Cortex 24, 663-676 (2014). "
    "doi:10.1093/cercor/bhs352",
    "nadeau2003": "Nadeau C, Bengio Y. Inference for the generalization error. Machine Learning 52, 239-281 "
    "(2003). doi:10.1023/A:1024068626366",
    "dinga2020": "Dinga R, Schmaal L, Penninx BWJH, Veltman DJ, Marquand AF. Controlling for effects of "
    "confounding variables on machine learning predictions. bioRxiv (2020). doi:10.1101/2020.08.17.255034",
    "angelopoulos2023": "Angelopoulos AN, Bates S. Conformal prediction: a gentle introduction. Foundations "
    "and Trends in Machine Learning 16, 494-591 (2023)",
    "winkler2015": "Winkler AM, Webster MA, Vidaurre D, Nichols TE, Smith SM. Multi-level block permutation. "
    "NeuroImage 123, 253-268 (2015). doi:10.1016/j.neuroimage.2015.05.092",
    "vancalster2019": "Van Calster B, McLernon DJ, van Smeden M, Wynants L, Steyerberg EW. Calibration: the "
    "Achilles heel of predictive analytics. BMC Medicine 17, 230 (2019). doi:10.1186/s12916-019-1466-7",
    "johnson2007": "Johnson WE, Li C, Rabinovic A. Adjusting batch effects in microarray expression data "
    "using empirical Bayes methods. Biostatistics 8, 118-127 (2007). doi:10.1093/biostatistics/kxj037",
    "fortin2018": "Fortin JP, Cullen N, Sheline YI, et al. Harmonization of cortical thickness "
    "measurements across scanners and sites. NeuroImage 167, 104-120 (2018). "
    "doi:10.1016/j.neuroimage.2017.11.024",
    "vickers2006": "Vickers AJ, Elkin EB. Decision curve analysis: a novel method for evaluating prediction "
    "models. Medical Decision Making 26, 565-574 (2006). doi:10.1177/0272989X06295361",
    "riley2020": "Riley RD, Ensor J, Snell KIE, et al. Calculating the sample size required for developing a "
    "clinical prediction model. BMJ 368, m441 (2020). doi:10.1136/bmj.m441",
}


def _v(versions: dict, name: str) -> str:
    return f" {versions[name]}" if versions.get(name) else ""


def _participant_paragraph(config: RunConfig) -> str:
    """The participant level, as its workflow describes itself (``LiterateWorkflow.visit_desc``)."""
    from workflows.participant import describe_participant

    steps = describe_participant(
        denoise=config.denoise,
        seed=config.seed,
        window=config.window,
        qc=config.qc,
        combine_sessions=config.queries.combine_sessions,
    )
    return (
        f"Resting-state BOLD runs (task `{config.queries.task_id}`) preprocessed with fMRIPrep "
        f"[@fmriprep] in `{config.queries.space}` space were processed as follows. {steps} The lesion "
        f"hemisphere came from `participants.tsv` (column `{config.queries.lesion_column}`) or from the "
        "lesion mask."
    )


def _group_paragraph(group: GroupParams) -> str:
    """The group workflow's own methods text (:func:`workflows.group.describe_group`, its ``__desc__``)."""
    from workflows.group import describe_group  # Nipype and the models: only when a group paragraph is due

    return describe_group(group)


def methods_text(config: RunConfig, versions: dict[str, str]) -> str:
    """Markdown methods text of this run: what was run with which parameters, versions and references.

    Written from the same parameter objects the workflows ran with; ``versions`` maps package names to
    versions. The group paragraph is included at the group level, the prediction sentence when a model
    was given.
    """
    parts = [
        "# Methods",
        "",
        f"Results were produced with strokefc{_v(versions, 'strokefc')}, a BIDS App built on Nipype"
        f"{_v(versions, 'nipype')} [@nipype], nilearn{_v(versions, 'nilearn')} [@nilearn], "
        f"NiBabel{_v(versions, 'nibabel')}, NumPy{_v(versions, 'numpy')}, SciPy{_v(versions, 'scipy')}"
        + (f", scikit-learn{_v(versions, 'scikit-learn')}" if versions.get("scikit-learn") else "")
        + (f" and PyTorch{_v(versions, 'torch')} [@pytorch]" if versions.get("torch") else "")
        + ".",
        "",
        _participant_paragraph(config),
        "",
    ]
    if config.analysis_level == "group":
        parts += [_group_paragraph(config.group), ""]
    elif config.model:
        parts += [
            f"Each participant's dFC variability map was classified by the trained model "
            f"`{Path(config.model).name}` (a 3D CNN trained by strokefc at the group level), "
            f"after the same lesion alignment and resampling as in training; the output is the "
            f"probability of severe impairment (UL-FMA <= "
            f"{float(config.group.severe_threshold):g}).",
            "",
        ]
    cited = [key for key in REFERENCES if f"[@{key}]" in "\n".join(parts)]
    parts += ["## Software versions", ""]
    parts += [f"- {name} {ver}" for name, ver in sorted(versions.items())] or ["- (not recorded)"]
    parts += ["", "## References", ""]
    parts += [f"- [{key}] {REFERENCES[key]}" for key in cited]
    return "\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escape, then ``code``, **bold**, *italic*, [@key] citations and [text](url) links."""
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*([^*]+)\*(?![\w*])", r"<em>\1</em>", text)
    text = re.sub(r"\[@([\w-]+)\]", r'[<a href="#ref-\1">\1</a>]', text)
    text = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', text)
    return text


def markdown_to_html(md: str) -> str:
    """A small Markdown subset to HTML: headings, paragraphs, bullet lists and inline marks.

    Enough for the methods text; avoids a dependency. Reference items ``- [key] text`` get an anchor.
    """
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(items) + "</ul>")
            items.clear()

    for line in md.splitlines():
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            level = min(len(heading.group(1)) + 1, 6)
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif stripped.startswith(("- ", "* ")):
            if para:
                out.append(f"<p>{_inline(' '.join(para))}</p>")
                para.clear()
            body = stripped[2:]
            ref = re.match(r"^\[([\w-]+)\]\s+(.*)$", body)
            if ref:
                items.append(f'<li id="ref-{ref.group(1)}">[{ref.group(1)}] {_inline(ref.group(2))}</li>')
            else:
                items.append(f"<li>{_inline(body)}</li>")
        else:
            para.append(stripped)
    flush()
    return "\n".join(out)


def write_citation(logs_dir: str | Path, md: str) -> tuple[Path, Path]:
    """Write ``CITATION.md`` and a self-contained ``CITATION.html`` into ``logs_dir``; return both paths."""
    logs_dir = Path(logs_dir)
    logs_dir.mkdir(parents=True, exist_ok=True)
    md_path = atomic_write_text(logs_dir / "CITATION.md", md)
    page = render_page("citation.html", title="strokefc methods", methods_html=markdown_to_html(md))
    html_path = atomic_write_text(logs_dir / "CITATION.html", page)
    return Path(md_path), Path(html_path)
