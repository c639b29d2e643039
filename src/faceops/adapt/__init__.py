"""AIN domain adaptation: carry a face recogniser trained on one group of faces to unlabeled faces of others.

Method: Mei Wang and Weihong Deng, "Adaptive Face Recognition Using Adversarial Information Network", IEEE
Transactions on Image Processing, vol. 31, pp. 4909-4921, 2022 (arXiv 2305.13605). A labelled source domain,
an unlabeled target: a graph convolutional network predicts linkage likelihoods between target faces to give
them pseudo-labels (``faceops.cluster``, the linkage GCN), and an adversarial mutual-information loss, minimised
by the target classifier and maximised by the feature extractor, moves the target prototypes so the unlabeled
faces cluster more easily. AIN has no public code and only its abstract was available to us; the modules say
which parts are our reconstruction:

- ``faceops.adapt.information``: the batch mutual-information estimate;
- ``faceops.adapt.term``: the target objective as one ``faceops.train.terms.LossTerm`` (pseudo-identity
  margin loss + mutual information through gradient reversal, ``faceops.losses.reverse_gradient``);
- ``faceops.adapt.domains``: source and target as shard copies selected by the ``group`` label;
- ``faceops.adapt.rounds``: the outer loop (embed, cluster, train), the ``adapt`` stage's work.
"""

from faceops.adapt.domains import select_by_group, write_domain
from faceops.adapt.information import entropy, mutual_information
from faceops.adapt.rounds import AdaptedModel, AdaptRound, adapt_model
from faceops.adapt.term import AdversarialInformationTerm

__all__ = ["AdaptRound", "AdaptedModel", "AdversarialInformationTerm", "adapt_model", "entropy", "mutual_information",
           "select_by_group", "write_domain"]  # fmt: skip
