// Command kubelet-bootstrap performs the part of a kubelet that joins a node,
// with the kubelet's own code, for machines where a kubelet cannot run (no
// container runtime): the client-certificate path of a kubelet started with
// --bootstrap-kubeconfig and rotateCertificates: true (cmd/kubelet/app's
// buildKubeletClientConfig): bootstrap.LoadClientConfig, the kubelet's client
// certificate manager (a CSR with the bootstrap token, the signed certificate in
// --cert-dir, --kubeconfig pointing at it), the rotating transport, and the
// Node object the kubelet registers (as system:node:<name>). With --rotate it
// then has the certificate manager rotate the client certificate once, as it
// does when the certificate nears its end: a CSR sent with the current node
// certificate, approved and signed by the cluster.
//
// It prints one JSON object: the node name, the user the API server sees, and
// the serials of the bootstrapped and rotated certificates.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	clientset "k8s.io/client-go/kubernetes"
	restclient "k8s.io/client-go/rest"
	"k8s.io/client-go/util/certificate"
	"k8s.io/klog/v2"
	kubeletcertificate "k8s.io/kubernetes/pkg/kubelet/certificate"
	"k8s.io/kubernetes/pkg/kubelet/certificate/bootstrap"
)

type result struct {
	Node              string   `json:"node"`
	User              string   `json:"user"`
	Groups            []string `json:"groups"`
	BootstrapSerial   string   `json:"bootstrapSerial"`
	RotatedSerial     string   `json:"rotatedSerial,omitempty"`
	RotatedUser       string   `json:"rotatedUser,omitempty"`
	CertificateIssuer string   `json:"certificateIssuer"`
}

func main() {
	kubeconfig := flag.String("kubeconfig", "/etc/kubernetes/kubelet.conf", "the kubelet's kubeconfig (written here)")
	bootstrapKubeconfig := flag.String("bootstrap-kubeconfig", "/etc/kubernetes/bootstrap-kubelet.conf", "the bootstrap kubeconfig kubeadm join writes")
	certDir := flag.String("cert-dir", "/var/lib/kubelet/pki", "the kubelet's certificate directory")
	nodeName := flag.String("node-name", "", "the node's name")
	wait := flag.Duration("wait-bootstrap-kubeconfig", 3*time.Minute, "how long to wait for --bootstrap-kubeconfig to appear")
	timeout := flag.Duration("timeout", 3*time.Minute, "bound of the TLS bootstrap and of the rotation")
	rotate := flag.Bool("rotate", false, "after registering, rotate the client certificate once")
	klog.InitFlags(nil)
	flag.Parse()
	if *nodeName == "" {
		fail(errors.New("--node-name is required"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), *wait+3*(*timeout))
	defer cancel()
	out, err := run(ctx, *kubeconfig, *bootstrapKubeconfig, *certDir, types.NodeName(*nodeName), *wait, *timeout, *rotate)
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "kubelet-bootstrap: %v\n", err)
	os.Exit(1)
}

func run(ctx context.Context, kubeconfig, bootstrapKubeconfig, certDir string, nodeName types.NodeName,
	waitFor, timeout time.Duration, rotate bool) (*result, error) {
	logger := klog.FromContext(ctx)
	// kubeadm join writes the bootstrap kubeconfig, then expects the kubelet to use it.
	if err := waitForFile(ctx, bootstrapKubeconfig, waitFor); err != nil {
		return nil, err
	}
	// As the kubelet does with rotateCertificates: true.
	certConfig, clientConfig, err := bootstrap.LoadClientConfig(logger, kubeconfig, bootstrapKubeconfig, certDir)
	if err != nil {
		return nil, fmt.Errorf("loading the client config: %w", err)
	}
	newClientsetFn := func(current *tls.Certificate) (clientset.Interface, error) {
		config := certConfig
		if current != nil {
			config = clientConfig
		}
		return clientset.NewForConfig(config)
	}
	manager, err := kubeletcertificate.NewKubeletClientCertificateManager(certDir, nodeName,
		clientConfig.CertData, clientConfig.KeyData, clientConfig.CertFile, clientConfig.KeyFile, newClientsetFn)
	if err != nil {
		return nil, fmt.Errorf("building the client certificate manager: %w", err)
	}
	manager.Start()
	defer manager.Stop()
	bootstrapped, err := waitForCertificate(ctx, manager, nil, timeout)
	if err != nil {
		return nil, fmt.Errorf("TLS bootstrap: %w", err)
	}

	transportConfig := restclient.AnonymousClientConfig(clientConfig)
	stop := make(chan struct{})
	defer close(stop)
	if _, err := kubeletcertificate.UpdateTransport(logger, stop, transportConfig, manager, 5*time.Minute); err != nil {
		return nil, fmt.Errorf("the rotating transport: %w", err)
	}
	client, err := clientset.NewForConfig(transportConfig)
	if err != nil {
		return nil, err
	}
	review, err := client.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("who am I with the bootstrapped certificate: %w", err)
	}
	if err := registerNode(ctx, client, nodeName); err != nil {
		return nil, err
	}
	out := &result{
		Node:              string(nodeName),
		User:              review.Status.UserInfo.Username,
		Groups:            review.Status.UserInfo.Groups,
		BootstrapSerial:   bootstrapped.SerialNumber.Text(16),
		CertificateIssuer: bootstrapped.Issuer.String(),
	}
	if !rotate {
		return out, nil
	}
	rotator, ok := manager.(interface{ RotateCerts() (bool, error) })
	if !ok {
		return nil, errors.New("the certificate manager cannot rotate on request")
	}
	// What the manager does at its rotation deadline (70–90% of the lifetime).
	if _, err := rotator.RotateCerts(); err != nil {
		return nil, fmt.Errorf("rotating: %w", err)
	}
	rotated, err := waitForCertificate(ctx, manager, bootstrapped, timeout)
	if err != nil {
		return nil, fmt.Errorf("rotation: %w", err)
	}
	out.RotatedSerial = rotated.SerialNumber.Text(16)
	// A fresh connection, with the rotated certificate only.
	fresh, err := clientset.NewForConfig(restclient.CopyConfig(clientConfig))
	if err != nil {
		return nil, err
	}
	review, err = fresh.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("who am I with the rotated certificate: %w", err)
	}
	out.RotatedUser = review.Status.UserInfo.Username
	return out, nil
}

func waitForFile(ctx context.Context, path string, timeout time.Duration) error {
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		_, err := os.Stat(path)
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("%s did not appear within %v", path, timeout)
	}
	return nil
}

// waitForCertificate waits until the manager holds a certificate other than previous.
func waitForCertificate(ctx context.Context, manager certificate.Manager, previous *x509.Certificate, timeout time.Duration) (*x509.Certificate, error) {
	var leaf *x509.Certificate
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		current := manager.Current()
		if current == nil || current.Leaf == nil {
			return false, nil
		}
		if previous != nil && current.Leaf.SerialNumber.Cmp(previous.SerialNumber) == 0 {
			return false, nil
		}
		leaf = current.Leaf
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no signed certificate within %v", timeout)
	}
	return leaf, nil
}

// registerNode creates the Node as the kubelet's registerWithAPIServer does (its
// initial labels), or finds it already there.
func registerNode(ctx context.Context, client clientset.Interface, nodeName types.NodeName) error {
	node := &v1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: string(nodeName),
			Labels: map[string]string{
				v1.LabelHostname:   string(nodeName),
				v1.LabelOSStable:   runtime.GOOS,
				v1.LabelArchStable: runtime.GOARCH,
			},
			Annotations: map[string]string{
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
			},
		},
	}
	_, err := client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("registering Node %s: %w", nodeName, err)
	}
	return nil
}
