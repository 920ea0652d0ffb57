"""nipype workflow builders (``init_*_wf``) and the code that runs them."""
