"""strokefc science: Nipype workflows, interfaces and the numeric modules they call."""
