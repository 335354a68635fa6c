"""fusion: from 2D slice predictions back to 3D lesions, and their MSSEG-2 evaluation.

``reassemble`` stacks per-slice probability PNGs into one volume per view (prediction
folder x orientation), fuses the views by lesion-wise voting (:mod:`fusion.voting`) and
writes the mask in each case's original t1 grid (:mod:`fusion.reassemble`);
``lesion-eval`` scores masks by the challenge's rules (:mod:`fusion.metrics`,
:mod:`fusion.evaluate`) and draws figures (:mod:`fusion.report`). It reads the slicer's
export contract and knows nothing about networks.
"""
