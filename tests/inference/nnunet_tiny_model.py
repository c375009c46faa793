"""Train a real, tiny nnU-Net v2 model with nnU-Net itself, for the import and parity tests.

Run as a script (``python nnunet_tiny_model.py ROOT [FEATURES ITERATIONS [CONFIGURATION ...]]``) so nnU-Net's
environment variables are set before it is imported and its worker processes can spawn. It writes four
SYNTHETIC CT-like cases (a body of 40 HU with 300 HU spheres, 3 mm slices of 0.8 mm pixels; labels body
and sphere) into ROOT/raw, plans and preprocesses them with nnU-Net's own planner, shrinks the plans'
network to 8 base features (a small plan), and trains each configuration (default 3d_fullres) with
nnUNetTrainer for one epoch of 40 iterations on the CPU (about a minute each). The results folders are
ROOT/res/Dataset902_Spheres/nnUNetTrainerTiny__nnUNetPlans__CONFIGURATION. nnU-Net's residual-encoder
planner (nnUNetPlannerResEncM) plans the same data too, untrained: its plans are
ROOT/pre/Dataset902_Spheres/nnUNetResEncUNetMPlans.json. bench/nnunet.py builds a 3d_fullres model with
nnU-Net's default 32 features for timing. :func:`predict_with_nnunet` is the reference side.
"""

import json
import os
import random
import sys

import numpy as np
import SimpleITK as sitk

DATASET = "Dataset902_Spheres"
LABELS = {"background": 0, "body": 1, "sphere": 2}


def sphere_case(rng, shape=(20, 56, 64), spacing_xyz=(0.8, 0.8, 3.0), spheres=5):
    """A SYNTHETIC CT-like image (int16) and its labels (uint8): an elliptic body with bright spheres."""
    z, y, x = np.indices(shape)
    image = np.full(shape, -1000.0)
    labels = np.zeros(shape, np.uint8)
    cy, cx = shape[1] / 2, shape[2] / 2
    body = ((y - cy) / (0.43 * shape[1])) ** 2 + ((x - cx) / (0.44 * shape[2])) ** 2 < 1
    image[body], labels[body] = 40, 1
    ratio = spacing_xyz[2] / spacing_xyz[0]
    for _ in range(spheres):
        c = rng.uniform(
            (0.2 * shape[0], 0.25 * shape[1], 0.22 * shape[2]), (0.8 * shape[0], 0.75 * shape[1], 0.78 * shape[2])
        )
        r = rng.uniform(5, 8)
        inside = ((z - c[0]) * ratio) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 < r**2
        image[inside & body], labels[inside & body] = 300, 2
    image += rng.normal(0, 20, shape)
    return image.astype(np.int16), labels


def write_nifti(array, path, spacing_xyz, origin=(10.0, -20.0, 5.0)):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing_xyz)
    img.SetOrigin(origin)
    sitk.WriteImage(img, path)


def main(root: str, features: int = 8, iterations: int = 40, configurations=("3d_fullres",)) -> None:
    os.environ.update(nnUNet_raw=f"{root}/raw", nnUNet_preprocessed=f"{root}/pre", nnUNet_results=f"{root}/res")
    raw = f"{root}/raw/{DATASET}"
    os.makedirs(f"{raw}/imagesTr", exist_ok=True)
    os.makedirs(f"{raw}/labelsTr", exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        image, labels = sphere_case(rng)
        write_nifti(image, f"{raw}/imagesTr/sph_{i:03d}_0000.nii.gz", (0.8, 0.8, 3.0))
        write_nifti(labels, f"{raw}/labelsTr/sph_{i:03d}.nii.gz", (0.8, 0.8, 3.0))
    dataset = {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 4, "file_ending": ".nii.gz"}
    with open(f"{raw}/dataset.json", "w") as f:
        json.dump(dataset, f)

    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    extract_fingerprints([902], num_processes=1, check_dataset_integrity=False, clean=True, verbose=False)
    plan_experiments([902])
    plan_experiments([902], experiment_planner_class_name="nnUNetPlannerResEncM")
    configurations = tuple(configurations)
    preprocess([902], configurations=configurations, num_processes=(1,) * len(configurations), verbose=False)

    class nnUNetTrainerTiny(nnUNetTrainer):
        def __init__(self, plans, configuration, fold, dataset_json, device):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 1, iterations, 1
            self.initial_lr = 0.03

    os.environ["nnUNet_n_proc_DA"] = "0"  # noqa: SIM112 (nnU-Net spells it so); augment in this process (set after planning, which divides by it)
    plans = load_json(f"{root}/pre/{DATASET}/nnUNetPlans.json")
    for configuration in configurations:
        arch = plans["configurations"][configuration]["architecture"]["arch_kwargs"]
        arch["features_per_stage"] = [min(features * 2**i, 320) for i in range(len(arch["features_per_stage"]))]
    dataset_json = load_json(f"{root}/pre/{DATASET}/dataset.json")
    torch.set_num_threads(2)
    for configuration in configurations:
        # nnU-Net seeds nothing: a 40-iteration model that learned the spheres on one run could miss
        # them on the next. Seeded, every run trains the same model.
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)
        fresh = {**plans, "continue_training": False}  # the trainer pops it
        nnUNetTrainerTiny(fresh, configuration, "all", dataset_json, torch.device("cpu")).run_training()


def predict_with_nnunet(folder, image, run: bool = True):
    """nnUNetPredictor's label map for one image file, set up as ``initialize_from_trained_model_folder``
    does; the checkpoint's trainer class lives in this script, so the network comes from nnUNetTrainer's
    own builder. Returns (label map, or None without ``run``; (the predictor, image, its properties))
    so a benchmark can call it again."""
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(load_json(f"{folder}/plans.json"))
    dataset = load_json(f"{folder}/dataset.json")
    ck = torch.load(f"{folder}/fold_all/checkpoint_final.pth", map_location="cpu", weights_only=False)
    config = plans.get_configuration(ck["init_args"]["configuration"])
    heads = plans.get_label_manager(dataset).num_segmentation_heads
    network = nnUNetTrainer.build_network_architecture(plans, config, 1, heads, enable_deep_supervision=False)
    predictor = nnUNetPredictor(device=torch.device("cpu"), verbose=False, allow_tqdm=False)
    weights, trainer, mirror = [ck["network_weights"]], ck["trainer_name"], ck["inference_allowed_mirroring_axes"]
    predictor.manual_initialization(network, plans, config, weights, dataset, trainer, mirror)
    data, props = SimpleITKIO().read_images([str(image)])
    return predictor.predict_single_npy_array(data, props) if run else None, (predictor, data, props)


if __name__ == "__main__":
    main(sys.argv[1], *(int(a) for a in sys.argv[2:4]), *([sys.argv[4:]] if sys.argv[4:] else []))
